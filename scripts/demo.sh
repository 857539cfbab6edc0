#!/usr/bin/env bash
# The demo behind `make demo`: build the demo dataset, cache SlowFast features, train SimpleVQA
# (config/demo_simpleVQA.yml), score the held-out test split, compute the challenge score on the
# val split, and save scatter plots. Everything lands in demo_out/; re-running reuses what exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=demo_out
CONFIG=config/demo_simpleVQA.yml

echo "== 1/5 demo dataset ($OUT/data)"
# 1.5 s clips (one SlowFast clip each): SlowFast takes ~1.7 s per clip on 2 CPU cores
$PY scripts/make_demo_dataset.py --out "$OUT/data" --duration 1.5

echo "== 2/5 SlowFast features (random-initialised network: no pretrained weights offline)"
$PY SlowFast_features.py --video_root "$OUT/data" --video_csv "$OUT/data/"{train,val,test}.csv \
    --feature_save_folder "$OUT/feature" --database demo --no_pretrained --num_workers 2

echo "== 3/5 training"
$PY train.py -o "$CONFIG" -r "$OUT/checkpoint" --log_dir "$OUT/log"

echo "== 4/5 scoring the held-out test split"
$PY test.py -o "$CONFIG" --split test --output "$OUT/prediction_test.csv" --plot "$OUT/scatter_test.png"

echo "== 5/5 challenge score on the val split (truth.csv + rank-pair-val.xlsx)"
$PY test.py -o "$CONFIG" --split val --output "$OUT/prediction.csv" --plot "$OUT/scatter_val.png"
$PY metric_score.py "$OUT/prediction.csv" "$OUT/data"
echo "plots: $OUT/scatter_test.png $OUT/scatter_val.png $OUT/checkpoint/*curves.png"
