#!/usr/bin/env bash
# Score the test list with a KSVQE checkpoint (3 clips per video, averaged) -> prediction.csv
#   GPUS=0 bash scripts/test_KSVQE.sh [--checkpoint CKPT] [--output prediction.csv]
CONFIG=config/Kwai_KSVQE_test.yml NAME=KSVQE exec bash "$(dirname "$0")/test.sh" "$@"
