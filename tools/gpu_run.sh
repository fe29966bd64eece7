#!/usr/bin/env bash
# The CUDA check of the R2S recipe (README, "On a GPU"): on a machine with a CUDA GPU and the
# repo's environment (make setup with a CUDA build of torch and spconv), generate a dataset, run
# both training stages on CUDA, evaluate, and benchmark inference on CUDA. Everything lands under
# $OUT (default out/gpu): JSON reports, logs, curves and the trained model.
#   tools/gpu_run.sh              a short run (minutes): checks every CUDA path and times it
#   FULL=1 tools/gpu_run.sh       the shipped model's recipe (configs/train/*.yaml step counts)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
DATA=${DATA:-$OUT/data}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"

if [[ "${FULL:-0}" == 1 ]]; then
  SCENES=800; SAMPLES=25; ANSWER_STEPS=(); GROUNDING_STEPS=()  # the configs' step counts
else
  SCENES=40; SAMPLES=10; ANSWER_STEPS=(optim.steps=40); GROUNDING_STEPS=(optim.steps=300)
fi
[[ -d "$DATA" ]] || "$BIN/r2s-gen-data" --out "$DATA" --seed 21 --scenes-train "$SCENES" \
  --scenes-val 30 --samples-per-scene "$SAMPLES" --workers "$(nproc)"
"$BIN/r2s-cache-objects" --data "$DATA" --device cuda

SET=(device=cuda threads=0 data.root="$DATA")
"$BIN/r2s-train" --config configs/train/answer.yaml --set "${SET[@]}" out="$OUT/answer" \
  "${ANSWER_STEPS[@]}" 2>&1 | tee "$OUT/answer.log"
SCANS=${SCANS:-$DATA-scans}  # the grounding stage's rooms: half of them simulated scans
[[ -d "$SCANS" ]] || "$BIN/r2s-scan-data" --data "$DATA" --out "$SCANS" --workers "$(nproc)"
"$BIN/r2s-cache-objects" --data "$SCANS" --device cuda
"$BIN/r2s-cache-states" --checkpoint "$OUT/answer/model" --data "$SCANS" --device cuda
for mode in two_stage single_stage; do
  "$BIN/r2s-train" --config configs/train/grounding.yaml --set "${SET[@]}" data.root="$SCANS" \
    init_from="$OUT/answer/model" out="$OUT/grounding-$mode" model.mode=$mode \
    "${GROUNDING_STEPS[@]}" 2>&1 | tee "$OUT/grounding-$mode.log"
  "$BIN/r2s-eval" --data "$SCANS" --split val --checkpoint "$OUT/grounding-$mode/model" \
    --device cuda --out "$OUT/eval-$mode.json"
  "$PY" -m r2s_model.eval.threshold --report "$OUT/eval-$mode.json"
done
"$PY" bench/bench_model.py --device cuda --llm-dtype bfloat16
"$PY" bench/bench_model.py --device cuda
cp bench/results/model_cuda_*.json "$OUT/"
echo "results in $OUT"
