#!/usr/bin/env bash
# Train SimpleVQA (DataParallel over GPUS). Run from anywhere; paths are relative to the repo root.
#   GPUS=0,1 bash scripts/train.sh [extra train.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p log
PY=${PY:-python}
nohup $PY -u train.py -o config/kwai_simpleVQA.yml --gpu_id "${GPUS:-0}" "$@" > log/train_simpleVQA.log 2>&1 &
echo "training in the background (pid $!); log: log/train_simpleVQA.log"
