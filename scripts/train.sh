#!/usr/bin/env bash
# Train in the background with train.py (DataParallel over GPUS); paths relative to the repo root.
#   GPUS=0,1 bash scripts/train.sh [extra train.py flags]          (SimpleVQA)
#   CONFIG=config/X.yml NAME=x bash scripts/train.sh                (any config)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p log
CONFIG=${CONFIG:-config/kwai_simpleVQA.yml}
LOG=log/train_${NAME:-simpleVQA}.log
nohup ${PY:-python} -u train.py -o "$CONFIG" --gpu_id "${GPUS:-0}" "$@" > "$LOG" 2>&1 &
echo "training in the background (pid $!); log: $LOG"
