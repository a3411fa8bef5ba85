#!/usr/bin/env bash
# Stage 4 of the default weights (issue 16, part 1): ONE device call that continues the
# shipped weights with the `gpu_ema` recipe and evaluates the result, within 8 minutes of
# device time including the machine's start-up (~1-2 min) and the transfers.
#
# Prepared and dry-run on the CPU only: it has NOT run on a GPU yet.
#
# Here, once (lossless WebP copies of the 291 training images and Set5/Set14, checked
# pixel-identical: 42.9 MiB measured, with a ~5 MiB checkout; .devdata/ is git-ignored):
#     python benchmarks/gpu_data.py ../shared/data .devdata
# Then one device call (the `run` tool), e.g.
#     run(command="bash benchmarks/gpu_train.sh", carry=[".devdata"], timeout_s=560)
# What comes back under $OUT (at most 8 files): final.safetensors (the better of the
# weights and their moving average on Set5), ema.safetensors, log.jsonl, train.txt,
# set5.json/.md, set14.json/.md (vdsr eval of final.safetensors on the GPU). Then, here,
# re-evaluate final.safetensors on the CPU (vdsr eval, fp32) before shipping anything.
#
# Knobs (environment): BUDGET seconds of training steps for --time-budget (default 270:
# 90% of it is filled with steps; data preparation, the step-time measurement, the
# validations and the evaluation come on top, ~1.5 min on the H200 last time), RECIPE,
# DATA (a folder of image folders) and VAL folders, DEVICE, WORKERS, RUN (the run folder).
# A CPU dry run (gpu_ema's batch of 256 does not fit a CPU budget; `fast` does, ~4 min):
#     RECIPE=fast BUDGET=90 DEVICE=cpu WORKERS=0 DATA=../shared/data/val VAL=../shared/data/val \
#         OUT=/tmp/dry RUN=/tmp/dry-run PYTHON=python bash benchmarks/gpu_train.sh
set -euo pipefail

BUDGET=${BUDGET:-270}
RECIPE=${RECIPE:-gpu_ema}
DATA=${DATA:-.devdata/train}
VAL=${VAL:-.devdata/val}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-8}
RUN=${RUN:-runs/$RECIPE}
OUT=${OUT:-out/$RECIPE}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

vdsr() { "$PY" -c "from vdsr_deploy.cli import app; app()" "$@"; }

mkdir -p "$OUT"
started=$(date +%s)
data_args=()
for folder in "$DATA"/*/; do data_args+=(--data "${folder%/}"); done
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))" | tee "$OUT/train.txt"

vdsr train --config "$RECIPE" --init-weights vdsr_deploy/assets/vdsr_default.safetensors \
    --time-budget "$BUDGET" --workers "$WORKERS" --device "$DEVICE" \
    "${data_args[@]}" --val "$VAL/set5" --out "$RUN" 2>&1 | tee -a "$OUT/train.txt"
echo "training: $(( $(date +%s) - started )) s" | tee -a "$OUT/train.txt"

cp "$RUN/final.safetensors" "$RUN/log.jsonl" "$OUT/"
if [[ -f $RUN/ema.safetensors ]]; then cp "$RUN/ema.safetensors" "$OUT/"; fi  # EMA recipes only
vdsr eval "$VAL/set5" "$VAL/set14" --device "$DEVICE" -w "$RUN/final.safetensors" --out "$OUT" \
    2>&1 | tee -a "$OUT/train.txt"
echo "total: $(( $(date +%s) - started )) s" | tee -a "$OUT/train.txt"
