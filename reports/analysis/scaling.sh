#!/usr/bin/env bash
# Scaling (issue #14 item 4): the trajectory-vs-full gap as a function of base size, over the
# sizes that can honestly be built here: all-MiniLM-L6-v2 cut to its first 2 and 4 layers, each
# turned into a diffusion LM exactly as the 6-layer base (reports/base-model.md: 800 steps of
# WikiText-2, same recipe), then the SST-2 comparison of reports/tasks (300 steps, batch 16,
# GLUE dev) for full fine-tuning, the paper's trajectory configuration and the mix preset,
# three seeds per size. Usage: bash reports/analysis/scaling.sh <6-layer base dir> [data root]
# Idempotent: finished pretraining and finished runs are skipped. The cut bases' weights stay out of
# git (about 60 and 75 MB): the pretraining records are committed, and a fresh checkout that lacks a
# base whose runs are not all finished pretrains it again (seed 0, deterministic on one machine).
set -euo pipefail
BASE6=${1:?usage: bash reports/analysis/scaling.sh <6-layer base dir> [data root]}
DATA=${2:-../shared/data}
OUT=reports/analysis/scaling
for L in 2 4; do
  if [ ! -f "$OUT/pretrain-L$L/model/model.safetensors" ] && [ "$(ls "$OUT"/runs/L$L/*/seed-*/result.json 2>/dev/null | wc -l)" -lt 9 ]; then
    resume=""; [ -d "$OUT/pretrain-L$L/checkpoints" ] && resume="--resume"
    [ -f "$OUT/pretrain-L$L/pretrain_summary.json" ] && resume="--overwrite"  # records here, weights not
    lora-diffusion pretrain --base minilm --corpus "$DATA/wikitext-2-raw" --output-dir "$OUT/pretrain-L$L" \
      --steps 800 --seed 0 --set keep_layers=$L --set train.lr=2e-4 --set train.warmup_steps=80 \
      --set train.batch_size=32 --set train.micro_batch_size=32 --set train.eval_every=100 \
      --set train.save_every=100 --set train.log_every=10 --set eval_chunks=256 --quiet $resume
  fi
done
for L in 2 4 6; do
  base=$OUT/pretrain-L$L/model; [ "$L" = 6 ] && base=$BASE6
  lora-diffusion study --task sst2 --data-root "$DATA" --base "$base" --methods full,trajectory,trajectory@mix \
    --seeds 42,43,44 --output-dir "$OUT/runs/L$L" --quiet --set validation_rows=0 --set eval_rows=0 \
    --set train.max_steps=300 --set train.batch_size=16 --set train.micro_batch_size=16 \
    --set train.warmup_steps=30 --set train.save_every=100 --set train.log_every=10 \
    --set method_lr.full=5e-5 --set method_lr.trajectory=1e-3 --set 'method_lr.trajectory@mix=1e-3' \
    --set 'method_options.trajectory@mix.preset=mix'
done
python -m lora_diffusion.report_scaling "$OUT/runs" "$OUT" --command "bash reports/analysis/scaling.sh $BASE6 $DATA"
