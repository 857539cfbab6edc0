#!/usr/bin/env bash
# Score the test list with a SimpleVQA checkpoint -> prediction.csv (a Codalab submission).
#   GPUS=0 bash scripts/test.sh [--checkpoint CKPT] [--output prediction.csv]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p log
PY=${PY:-python}
$PY -u test.py -o config/kwai_simpleVQA_test.yml --gpu_id "${GPUS:-0}" "$@" 2>&1 | tee log/test_simpleVQA.log
