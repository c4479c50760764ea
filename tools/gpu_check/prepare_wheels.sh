#!/usr/bin/env bash
# Fill <repo>/.whl with the pure-Python wheels that `make gpu-check` needs on the lent GPU machine.
#
#   bash tools/gpu_check/prepare_wheels.sh [DEST]     # DEST defaults to <repo>/.whl
#
# That machine's image (Python 3.12, torch, triton, timm, numpy, opencv, matplotlib, rich, pyyaml,
# click, markdown, zipp, ...) has no OpenMMLab package and no network. `import mmvmamba` needs
# mmengine and mmpretrain (the backbones subclass mmpretrain's BaseBackbone), and mmpretrain
# imports mmcv: mmcv-lite is mmcv without its compiled ops (it installs the same `mmcv` package),
# which is all the import chain touches. The rest are their pure-Python dependencies the image
# lacks. Every wheel is py3-none-any, so the set is the same for any CPython 3 and platform.
# The folder is git-ignored; the device call names it in `carry` (see tools/gpu_check/README.md).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=${1:-$repo/.whl}
python=${PYTHON:-python3}

WHEELS=(
  mmengine==0.10.7
  mmpretrain==1.2.0
  mmcv-lite==2.1.0
  addict==2.4.0             # mmengine, mmcv
  termcolor==3.3.0          # mmengine
  yapf==0.43.0              # mmengine, mmcv
  platformdirs==4.3.8       # yapf
  importlib-metadata==8.7.0 # mmpretrain.utils
  modelindex==0.0.2         # mmpretrain.apis
  model-index==0.1.11       # modelindex
  ordered-set==4.1.0        # model-index
  mat4py==0.6.0             # mmpretrain.datasets
)
MAX_MIB=16

mkdir -p "$dest"
rm -f "$dest"/*.whl
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" "${WHEELS[@]}"

count=$(ls "$dest"/*.whl | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
  echo "prepare_wheels: expected ${#WHEELS[@]} wheels in $dest, found $count" >&2
  exit 1
fi
for w in "$dest"/*.whl; do
  case "$w" in
    *-none-any.whl) ;;
    *) echo "prepare_wheels: $w is not pure Python; it would not install on the device" >&2; exit 1 ;;
  esac
done
size_kib=$(du -sk "$dest" | cut -f1)
if [ "$size_kib" -gt $((MAX_MIB * 1024)) ]; then
  echo "prepare_wheels: $dest holds ${size_kib} KiB, over the ${MAX_MIB} MiB budget" >&2
  exit 1
fi
echo "prepare_wheels: $count wheels, ${size_kib} KiB in $dest"
