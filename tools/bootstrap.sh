#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv at .venv with the pinned OpenMMLab stack.
#
#   bash tools/bootstrap.sh          # idempotent: a second run with nothing changed takes seconds
#
# Environment knobs:
#   MMVMAMBA_VENV        where the virtualenv goes (default: <repo>/.venv)
#   MMVMAMBA_CACHE_DIR   where built mmcv wheels are kept (default: ~/.cache/mmvmamba)
#   MMCV_WHEEL           path to a prebuilt mmcv 2.1.0 wheel for your torch/CUDA; skips the build
#   PYTHON               the interpreter to create the venv with (default: python3)
#
# mmcv 2.1.0 has no CPU wheel on PyPI, and its sdist does not build against torch >= 2.14 as
# shipped: we build it once per (torch version, python, platform) with its compiled ops, C++20,
# and keep the wheel in a cache keyed by exactly those, because pip's own wheel cache is not keyed
# by the torch version and silently reuses a wheel built against another torch.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MMVMAMBA_VENV:-$repo/.venv}
cache=${MMVMAMBA_CACHE_DIR:-$HOME/.cache/mmvmamba}
python=${PYTHON:-python3}

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0

phase_start=$(date +%s)
phase() { # print how long the previous phase took, then announce the next
  local now; now=$(date +%s)
  printf '[bootstrap] %-40s (previous phase %ds)\n' "$1" $((now - phase_start))
  phase_start=$now
}

stamp_inputs() { cat "$repo"/requirements/*.txt "$repo/setup.py" "$repo/tools/bootstrap.sh"; }
stamp=$(stamp_inputs | sha256sum | cut -c1-16)
if [ -f "$venv/.mmvmamba-stamp" ] && [ "$(cat "$venv/.mmvmamba-stamp")" = "$stamp" ]; then
  echo "[bootstrap] $venv is up to date (stamp $stamp)"
  exit 0
fi

phase "creating virtualenv at $venv"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip 'setuptools>=77,<81' wheel

phase "installing torch $TORCH_VERSION"
"${pip[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

phase "installing mmcv $MMCV_VERSION"
have_mmcv=$("$venv/bin/python" - <<'EOF' 2>/dev/null || true
import importlib.metadata as m, mmcv.ops  # noqa: F401  (ops must be compiled)
print(m.version("mmcv"))
EOF
)
if [ "$have_mmcv" != "$MMCV_VERSION" ]; then
  if [ -z "${MMCV_WHEEL:-}" ]; then
    pytag=$("$venv/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    key="torch-${TORCH_VERSION}-${pytag}-$(uname -m)"
    wheel_dir="$cache/mmcv/$key"
    MMCV_WHEEL=$(ls "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$MMCV_WHEEL" ]; then
      echo "[bootstrap] no cached mmcv wheel for $key: building from source (about 20 min on 2 cores)"
      build=$(mktemp -d)
      "$venv/bin/python" -m pip download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$build"
      tar -xzf "$build"/mmcv-"$MMCV_VERSION".tar.gz -C "$build"
      src="$build/mmcv-$MMCV_VERSION"
      # torch >= 2.14 requires C++20 ("#error C++20 or later compatible compiler is required").
      sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
      grep -q -- '-std=c++20' "$src/setup.py" || { echo "[bootstrap] could not raise mmcv's C++ standard" >&2; exit 1; }
      (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$venv/bin/python" -m pip wheel -q --no-build-isolation --no-deps . -w "$build/dist")
      mkdir -p "$wheel_dir"
      cp "$build"/dist/mmcv-*.whl "$wheel_dir/"
      rm -rf "$build"
      MMCV_WHEEL=$(ls "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)
    else
      echo "[bootstrap] using cached $MMCV_WHEEL"
    fi
  fi
  "${pip[@]}" --no-deps --force-reinstall "$MMCV_WHEEL"
  # mmcv's own light dependencies (the wheel was installed with --no-deps to keep torch as is).
  "${pip[@]}" addict packaging Pillow pyyaml yapf opencv-python-headless
fi

phase "installing the OpenMMLab stack and test tools"
"${pip[@]}" -r "$repo/requirements/runtime.txt" -r "$repo/requirements/mmdet_mmseg.txt" \
  -r "$repo/requirements/tests.txt"

phase "installing mmvmamba (editable)"
"${pip[@]}" --no-build-isolation --no-deps -e "$repo"

phase "checking imports"
"$venv/bin/python" - <<'EOF'
import torch, mmcv, mmcv.ops, mmengine, mmdet, mmseg, mmpretrain  # noqa: F401
import mmvmamba, vmamba_ops  # noqa: F401
print(f"[bootstrap] torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, "
      f"mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}")
EOF
echo "$stamp" > "$venv/.mmvmamba-stamp"
phase "done"
