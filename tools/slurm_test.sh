#!/usr/bin/env bash
# Testing on a Slurm cluster (one task per GPU), as mmdet/mmseg's slurm_test.sh:
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: [GPUS=8] $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py args...]" >&2
  exit 2
fi
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
HERE=$(cd "$(dirname "$0")" && pwd)
# the project's virtualenv if there is one, else python on PATH; PYTHON=... overrides
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$HERE/../.venv/bin/python" ]; then PYTHON="$HERE/../.venv/bin/python"; else PYTHON=$(command -v python || command -v python3); fi
fi

# shellcheck disable=SC2086
srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  --gres=gpu:"$GPUS_PER_NODE" \
  --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  $SRUN_ARGS \
  "$PYTHON" -u "$HERE/test.py" "$CONFIG" "$CHECKPOINT" --launcher=slurm "${@:5}"
