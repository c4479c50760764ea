#!/usr/bin/env bash
# The GPU check as one shell command (what `make gpu-check` runs; usable where make is missing).
#
#   bash tools/gpu_check/gpu_check.sh [OUT_DIR] [run.py options...]    # OUT_DIR: work_dirs/gpu_check
#
# Installs the wheels carried in .whl/ (tools/gpu_check/prepare_wheels.sh) into GPU_CHECK_SITE
# (default /tmp/site) with the machine's own pip, puts them first on PYTHONPATH and runs
# tools/gpu_check/run.py with GPU_CHECK_PY (default python3: the lent machine's image, no .venv).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
py=${GPU_CHECK_PY:-python3}
site=${GPU_CHECK_SITE:-/tmp/site}
out=${1:-work_dirs/gpu_check}
shift || true

if ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$py" tools/gpu_check/run.py --out "$out" "$@"
