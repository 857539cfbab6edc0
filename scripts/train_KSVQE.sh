#!/usr/bin/env bash
# Train KSVQE in one process (DataParallel over GPUS).
#   GPUS=0,1 bash scripts/train_KSVQE.sh [extra train.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p log
PY=${PY:-python}
nohup $PY -u train.py -o config/Kwai_KSVQE.yml --gpu_id "${GPUS:-0}" "$@" > log/train_KSVQE.log 2>&1 &
echo "training in the background (pid $!); log: log/train_KSVQE.log"
