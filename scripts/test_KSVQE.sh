#!/usr/bin/env bash
# Score the test list with a KSVQE checkpoint (3 clips per video, averaged) -> prediction.csv
#   GPUS=0 bash scripts/test_KSVQE.sh [--checkpoint CKPT] [--output prediction.csv]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p log
PY=${PY:-python}
$PY -u test.py -o config/Kwai_KSVQE_test.yml --gpu_id "${GPUS:-0}" "$@" 2>&1 | tee log/test_KSVQE.log
