#!/usr/bin/env bash
# Distributed testing over torchrun: NCCL on GPUs, gloo when the machine has no GPU.
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC_PER_NODE [test.py args...]
# Multi-node: the same command on every node with NNODES, NODE_RANK, MASTER_ADDR, PORT set.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT NPROC_PER_NODE [tools/test.py args...]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
HERE=$(cd "$(dirname "$0")" && pwd)
# the project's virtualenv if there is one, else python on PATH; PYTHON=... overrides
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$HERE/../.venv/bin/python" ]; then PYTHON="$HERE/../.venv/bin/python"; else PYTHON=$(command -v python || command -v python3); fi
fi

exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" \
  --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$GPUS" \
  --master_port="$PORT" \
  "$HERE/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
