#!/usr/bin/env bash
# Train KSVQE in one process (DataParallel over GPUS):  GPUS=0,1 bash scripts/train_KSVQE.sh [flags]
CONFIG=config/Kwai_KSVQE.yml NAME=KSVQE exec bash "$(dirname "$0")/train.sh" "$@"
