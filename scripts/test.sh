#!/usr/bin/env bash
# Score the test list with a checkpoint -> prediction.csv (a Codalab submission).
#   GPUS=0 bash scripts/test.sh [--checkpoint CKPT] [--output prediction.csv]      (SimpleVQA)
#   CONFIG=config/X_test.yml NAME=x bash scripts/test.sh                          (any config)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p log
${PY:-python} -u test.py -o "${CONFIG:-config/kwai_simpleVQA_test.yml}" --gpu_id "${GPUS:-0}" "$@" 2>&1 \
    | tee "log/test_${NAME:-simpleVQA}.log"
