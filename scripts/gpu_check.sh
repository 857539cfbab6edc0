#!/usr/bin/env bash
# GPU check (about 5 minutes on one GPU; see scripts/gpu_check.py for what it checks):
#   bash scripts/gpu_check.sh [--work DIR]
# Exit status: 0 passed on a GPU, 1 a check failed, 4 no CUDA GPU (GPU checks skipped, CPU pass ok).
set -uo pipefail
cd "$(dirname "$0")/.."
exec ${PY:-python} -u scripts/gpu_check.py "$@"
