#!/usr/bin/env bash
# Generation speed (issue #16 items 3-5): every decoding setting of bench/decoding.py (the exact
# sampler; low-confidence one token per step; parallel threshold 0.9 / 0.7 / 0.5; fixed 2 / 4 per
# call; threshold 0.9 in semi-AR blocks of 8; threshold 0.9 with the approximate prompt cache; the
# exact prompt cache for adapters trained with prefix prompt attention) on the many-task study's
# seed-42 trajectory and LoRA adapters (reports/tasks/runs) for SQuAD, CommonGen, WMT14 en-de and
# SST-2 (XSum's where its adapters exist: README); then the bench's decoding part (the confidence-independent
# settings' throughput at batch 32 on a synthetic batch) and its latency part (trajectory vs frozen
# base at batch 8 for the exact sampler and fixed-4, the base timed twice: the noise floor; 20
# rounds); run both on an otherwise idle machine; then reports/generation-speed.md.
#
# Usage (from the repository root):
#   bash reports/generation-speed/run.sh <base dir> [data root] [rows per task]
# Environment: THREADS (torch threads, default 1), CPUS (pin to these cores with taskset, e.g. 1),
#   ROUNDS (timed rounds per study, default 5), BENCH_ROUNDS (bench decoding rounds, default 15),
#   NOTE (what else ran on the machine: stated in the report), PYTHON (default python),
#   BENCH_ARGS (more `lora-diffusion bench` flags, e.g. "--set latency_rounds=30").
# Idempotent: a study whose decoding.json exists, and a bench whose bench.json holds the decoding
# part, are skipped; an interrupted study resumes from its finished settings and rounds; a study
# another process is running (its output's .lock held) is skipped; the report is always rewritten
# from what exists.
set -euo pipefail
BASE=${1:?usage: bash reports/generation-speed/run.sh <base dir> [data root] [rows per task]}
DATA=${2:-../shared/data}
ROWS=${3:-100}
THREADS=${THREADS:-1}
CPUS=${CPUS:-}
ROUNDS=${ROUNDS:-5}
BENCH_ROUNDS=${BENCH_ROUNDS:-15}
NOTE=${NOTE:-not stated}
read -r -a bench_args <<< "${BENCH_ARGS:-}"
PY=${PYTHON:-python}
OUT=reports/generation-speed/runs
RUNS=reports/tasks/runs
export OMP_NUM_THREADS=$THREADS
pin=()
[ -n "$CPUS" ] && pin=(taskset -c "$CPUS")

# the third generation task: WMT14 en-de (112-token responses; its adapters train in ~10 minutes
# under bf16); XSum's studies take 2-3 hours each on one thread (384-token documents) and run too
# where its adapters exist
generation=(squad commongen wmt14_en_de)
if [ -d "$RUNS/xsum/trajectory/seed-42/adapter" ] || [ -d "$RUNS/xsum/lora/seed-42/adapter" ]; then generation+=(xsum); fi
dirs=()
decode() {  # <task> <adapter> <output dir> <label> [extra settings]: one decoding study, skipped when done or untrained
  dirs+=("$3")
  [ -d "$2" ] || { echo "[generation-speed] $2 missing (not trained yet), skipped"; return 0; }
  [ -f "$3/decoding.json" ] && { echo "[generation-speed] $1 / $4 done, skipped"; return 0; }
  mkdir -p "$3"
  exec 9>"$3/.lock"  # one process per study: another worker running it is left alone
  flock -n 9 || { echo "[generation-speed] $1 / $4 is running in another process, skipped"; exec 9>&-; return 0; }
  echo "[generation-speed] $1 / $4"
  "${pin[@]}" "$PY" -m lora_diffusion.bench.decoding --adapter "$2" --base "$BASE" --task "$1" \
    --data-root "$DATA" --rows "$ROWS" --batch-size 32 --rounds "$ROUNDS" --threads "$THREADS" \
    --note "$NOTE" --output-dir "$3" ${5:+--extra-settings "$5"}
  exec 9>&-
}
# XSum's 40-token budget floods confidence-ordered decoding with end tokens (README): there, and on
# WMT14's 112 tokens, the grid also has parallel settings inside semi-AR blocks (added in session 9)
extra() { case "$1" in xsum|wmt14_en_de) echo "fixed-4+block-8,threshold-0.7+block-8,threshold-0.5+block-8";; esac; return 0; }
for task in "${generation[@]}" sst2; do
  for m in trajectory lora; do
    decode "$task" "$RUNS/$task/$m/seed-42/adapter" "$OUT/$task-$m" "$m" "$(extra "$task")"
  done
done
# Then (about 30 minutes on one thread) the trajectory variant that writes free text (reports/quality, `deep-all`)
# beside the paper's configuration on CommonGen, the free-text task where the methods differ: its
# seed-42 run of reports/quality/free-text-seeds trained again here (same config; adapters are not
# committed); after the task studies that the issue's targets need, and listed last in the aggregate
DEEP=$OUT/train/trajectory@deep-all/seed-42
if [ ! -d "$DEEP/adapter" ]; then
  "${pin[@]}" "$PY" -m lora_diffusion.cli study --config reports/quality/free_text_seeds.yaml --base "$BASE" \
    --data-root "$DATA" --methods trajectory@deep-all --seeds 42 --output-dir "$OUT/train" --quiet
fi
decode commongen "$DEEP/adapter" "$OUT/commongen-trajectory-deep-all" trajectory@deep-all

# The bench's decoding part, beside a copy of the committed bench result (its other parts are kept
# from there and marked as reused with their commit in bench.json / bench.md).
BENCH=reports/generation-speed/bench
mkdir -p "$BENCH"
[ -f "$BENCH/bench.json" ] || cp reports/bench/bench.json "$BENCH/bench.json"
for part in decoding latency; do
  if "$PY" -c 'import json, sys; sys.exit(0 if sys.argv[2] in json.load(open(sys.argv[1])) else 1)' "$BENCH/bench.json" "$part"; then
    echo "[generation-speed] bench $part part done, skipped"
  else
    "${pin[@]}" "$PY" -m lora_diffusion.cli bench --base "$BASE" --rounds "$BENCH_ROUNDS" --output-dir "$BENCH" \
      --set "parts=[$part]" --set decoding_batch=32 --set latency_rounds=20 "${bench_args[@]}"
  fi
done

"$PY" -m lora_diffusion.bench.decoding --aggregate "${dirs[@]}" --bench "$BENCH/bench.json" \
  --output reports/generation-speed.md
