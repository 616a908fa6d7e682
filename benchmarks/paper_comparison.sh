#!/usr/bin/env bash
# The paper's Tables 1-2 again, by case and over folds, then the speed of the same eight networks.
#
#   benchmarks/paper_comparison.sh [OUT] [DATA]        (defaults: runs/compare8, ../shared/data/ddti)
#
# All eight networks on the same 3 case-grouped folds with the whole-frame CPU recipe
# (configs/frame.yaml, the default until 2026-11-30, 49d7b68) at 15 epochs (about 51
# minutes on 2 cores with AMX-BF16; the run of 2026-11-29, 2a76dc3, is $EXP/compare8), then training
# throughput at 96 and 224 px and single-image latency (eager, ONNX, Grad-CAM) of each fold-0
# model. Resumable: run it again and `thyronet compare` continues with the next unfinished fold.
# Meant for the background (nohup ... &); the figures go in docs/results.md.
set -euo pipefail
OUT=${1:-runs/compare8}
DATA=${2:-../shared/data/ddti}
MODELS=(baseline baseline_bottleneck baseline_block thyronet_x4 vgg16_bn alexnet googlenet mobilenet_v2)
PYTHON=${PYTHON:-python}
"$PYTHON" -m thyronet compare --config frame --data "$DATA" --models "${MODELS[@]}" --folds 3 --epochs 15 --set trainer.threads=2 --out "$OUT"
"$PYTHON" benchmarks/throughput.py --models "${MODELS[@]}" --sizes 96 224 --steps 2 --rounds 3
for model in "${MODELS[@]}"; do
  "$PYTHON" benchmarks/latency.py "$OUT/$model/fold-0" --images "$DATA" --repeats 20 --threads 2
done
