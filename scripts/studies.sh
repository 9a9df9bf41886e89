#!/usr/bin/env bash
# The long studies of the open issues as one queue, in priority order, for a machine that is lent
# for a few hours at a time. Every item is idempotent and resumable (finished runs are skipped,
# interrupted ones resume), so a session simply starts workers again; on two cores, two workers
# with one thread each:
#
#   bash scripts/studies.sh worker > runs/worker-1.log 2>&1 &
#   bash scripts/studies.sh worker > runs/worker-2.log 2>&1 &
#   bash scripts/studies.sh list                 # the queue
#
# Items marked shared lock each of their cells (two workers split the work); the others run in one
# worker at a time (an flock on runs/.queue-<item>.lock) and the second worker moves on.
# Environment: BASE (default bases/minilm-wt2, the committed base: bases/README.md), DATA (default
# ../shared/data), THREADS (torch threads per worker, default 1), NOTE (what ran beside it, for
# the timing records), ITEMS (a space-separated subset of the queue, in this order).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-bases/minilm-wt2}
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${THREADS:-1}
export PYTHON=${PYTHON:-$PWD/.venv/bin/python}
export NOTE=${NOTE:-"1 thread, beside another one-thread worker on the other core of 2: wall times are noisy, pass counts and metrics are exact"}
LD=("$PYTHON" -m lora_diffusion.cli)
mkdir -p runs

# name | shared or single | issue | what runs. bf16 comes early: where bfloat16 autocast changes
# nothing the methods reach, the later studies can train under it at a half or a third of the time
QUEUE=(
  "speed|shared|#16|ROUNDS=3 bash reports/generation-speed/run.sh $BASE $DATA"
  "bf16|shared|#13|${LD[*]} study --config reports/quality/bf16-check/study.yaml --base $BASE --data-root $DATA --quiet --grid train.mixed_precision=no,bf16"
  "tasks|shared|#10|${LD[*]} study --config reports/tasks/study.yaml --base $BASE --data-root $DATA --output-dir reports/tasks/runs --quiet"
  "forgetting|single|#14|bash reports/forgetting/run.sh $BASE $DATA 256"
  "analysis|single|#14|bash reports/analysis/run.sh $BASE $DATA 64"
  "composition|shared|#12|bash reports/composition/run.sh $BASE $DATA 1000"
  "ablations|shared|#14|bash reports/ablations/run.sh $BASE $DATA"
  "scaling|single|#14|bash reports/analysis/scaling.sh $BASE $DATA"
  "variants|shared|#13|${LD[*]} study --config reports/quality/variants.yaml --base $BASE --data-root $DATA --quiet --grid method_options.preset=paper,lean,mix,deep,deep-all,side,side2"
  "quality|shared|#13|${LD[*]} study --config reports/quality/study.yaml --base $BASE --data-root $DATA --quiet"
  "deep-all-tasks|shared|#10 #13|${LD[*]} study --config reports/tasks/study.yaml --base $BASE --data-root $DATA --output-dir reports/tasks/runs --quiet --methods trajectory@deep-all --tasks commongen,squad,xsum,wmt14_en_de,gsm8k,stsb --seeds 42 --set 'method_lr={trajectory@deep-all: 1.0e-3}' --set 'method_options={trajectory@deep-all: {preset: deep-all}}'"
)

item() { local IFS='|'; read -r name mode issue cmd <<< "$1"; }

case "${1:-}" in
  list)
    for entry in "${QUEUE[@]}"; do item "$entry"; printf '%-12s %-7s %-4s %s\n' "$name" "$mode" "$issue" "$cmd"; done ;;
  worker)
    [ -f "$BASE/config.json" ] || { echo "no base at $BASE (bases/README.md)" >&2; exit 2; }
    for entry in "${QUEUE[@]}"; do
      item "$entry"
      if [ -n "${ITEMS:-}" ] && [[ " $ITEMS " != *" $name "* ]]; then continue; fi
      echo "[studies] $(date -u +%FT%TZ) $name ($issue): $cmd"
      if [ "$mode" = single ]; then
        exec 8>"runs/.queue-$name.lock"
        flock -n 8 || { echo "[studies] $name runs in another worker: next"; exec 8>&-; continue; }
      fi
      PATH="$(dirname "$PYTHON"):$PATH" bash -c "$cmd" || echo "[studies] $name stopped with exit $? (see above): next"
      [ "$mode" = single ] && exec 8>&-
    done
    echo "[studies] $(date -u +%FT%TZ) queue done" ;;
  *) echo "usage: bash scripts/studies.sh {worker|list}" >&2; exit 2 ;;
esac
