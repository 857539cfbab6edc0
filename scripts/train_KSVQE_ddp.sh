#!/usr/bin/env bash
# Train KSVQE with DistributedDataParallel, one process per GPU (NPROC, default: all GPUs).
#   NPROC=4 bash scripts/train_KSVQE_ddp.sh [extra train_ddp.py flags]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT on every node.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p log
PY=${PY:-python}
NPROC=${NPROC:-$($PY -c "import torch; print(max(torch.cuda.device_count(), 1))")}
nohup $PY -m torch.distributed.run --nproc_per_node="$NPROC" --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
    train_ddp.py -o config/Kwai_KSVQE.yml "$@" > log/train_KSVQE_ddp.log 2>&1 &
echo "training in the background (pid $!); log: log/train_KSVQE_ddp.log"
