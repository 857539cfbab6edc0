#!/usr/bin/env bash
# The demo behind `make demo`: build the demo dataset, cache SlowFast features, train SimpleVQA
# (config/demo_simpleVQA.yml), score the held-out test split, compute the challenge score on the
# val split, and save scatter plots. Everything lands in demo_out/; re-running reuses the dataset and
# features and trains afresh (train.py --overwrite).
#
# PRETRAINED=0 (default): random-initialised, frozen ResNet-50 and SlowFast (no weights offline).
# PRETRAINED=1 (`make demo PRETRAINED=1`): the same recipe on ImageNet ResNet-50 and Kinetics-400
#   SlowFast weights (frozen features + trained head), on the ImageNet-sized view (squash to 256,
#   crop 224) so that fine distortions survive the resize; stops at once, naming the missing
#   files, when they are not on disk (see docs/weights.md). Outputs under
#   demo_out/pretrained/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PRETRAINED=${PRETRAINED:-0}
DATA=demo_out/data
CONFIG=config/demo_simpleVQA.yml

case "$PRETRAINED" in
0)
    OUT=demo_out
    SLOWFAST_WEIGHTS=(--no_pretrained)
    SETS=()
    ;;
1)
    OUT=demo_out/pretrained
    $PY - <<'PYEOF'
import sys
from kvq.weights import MissingWeightsError, resolve_weight
try:
    for name in ("resnet50_imagenet", "slowfast_r50_k400"):
        resolve_weight(name)
except MissingWeightsError as e:
    sys.exit(f"PRETRAINED=1: {e}")
PYEOF
    SLOWFAST_WEIGHTS=()
    SETS=(--set model.args.simpleVQA.backbone.pretrained=true
          --set "test_load_path=$OUT/checkpoint/demo_SimpleVQA_head_val-ltest_n_finetuned.pth")
    for split in train val test; do
        SETS+=(--set "data.$split.args.data_prefix_3D=$OUT/feature/demo"
               --set "data.$split.args.sample_types.simpleVQA.resize=256"
               --set "data.$split.args.sample_types.simpleVQA.crop=224")
    done
    ;;
*)
    echo "PRETRAINED must be 0 or 1, got '$PRETRAINED'" >&2
    exit 2
    ;;
esac

echo "== 1/5 demo dataset ($DATA)"
# 1.5 s clips (one SlowFast clip each): SlowFast takes ~1.7 s per clip on 2 CPU cores
$PY scripts/make_demo_dataset.py --out "$DATA" --duration 1.5

echo "== 2/5 SlowFast features ($OUT/feature)"
$PY SlowFast_features.py --video_root "$DATA" --video_csv "$DATA/"{train,val,test}.csv \
    --feature_save_folder "$OUT/feature" --database demo --num_workers 2 ${SLOWFAST_WEIGHTS[@]+"${SLOWFAST_WEIGHTS[@]}"}

echo "== 3/5 training"
$PY train.py -o "$CONFIG" -r "$OUT/checkpoint" --overwrite --log_dir "$OUT/log" ${SETS[@]+"${SETS[@]}"}

echo "== 4/5 scoring the held-out test split"
$PY test.py -o "$CONFIG" --split test --output "$OUT/prediction_test.csv" --plot "$OUT/scatter_test.png" \
    ${SETS[@]+"${SETS[@]}"}

echo "== 5/5 challenge score on the val split (truth.csv + rank-pair-val.xlsx)"
$PY test.py -o "$CONFIG" --split val --output "$OUT/prediction.csv" --plot "$OUT/scatter_val.png" \
    ${SETS[@]+"${SETS[@]}"}
$PY metric_score.py "$OUT/prediction.csv" "$DATA"
echo "plots: $OUT/scatter_test.png $OUT/scatter_val.png $OUT/checkpoint/*curves.png"
