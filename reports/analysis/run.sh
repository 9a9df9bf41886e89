#!/usr/bin/env bash
# Analyses (issue #14 item 3) of the many-task study's seed-42 adapters (reports/tasks/runs):
# effective rank exactly as Eq. 28 (over the steps of each phase) for every trajectory adapter
# whose task has finished, t-SNE of their perturbations by phase and by task, and the learning
# curve of every method on SST-2. Usage (from the repository root):
#   bash reports/analysis/run.sh <base dir> [data root] [rows]
# Idempotent: an analysis whose output exists is skipped (the t-SNE is redone when more tasks have finished). Scaling is its own script (scaling.sh).
set -euo pipefail
BASE=${1:?usage: bash reports/analysis/run.sh <base dir> [data root] [rows]}
DATA=${2:-../shared/data}
ROWS=${3:-64}
RUNS=reports/tasks/runs
OUT=reports/analysis
adapters=() paths=()
for task in sst2 squad commongen ag_news trec strategyqa; do
  adapter=$RUNS/$task/trajectory/seed-42/adapter
  [ -f "$RUNS/$task/trajectory/seed-42/result.json" ] || { echo "[analysis] $task: study run not finished, skipped"; continue; }
  adapters+=(--adapter "$adapter") paths+=("$adapter")
  if [ ! -f "$OUT/effective-rank/$task/effective_rank.json" ]; then
    echo "[analysis] effective rank (Eq. 28) of $task"
    lora-diffusion analyze-rank --adapter "$adapter" --base "$BASE" --task "$task" --data-root "$DATA" \
      --over steps --max-rows "$ROWS" --output-dir "$OUT/effective-rank/$task" --seed 0
  fi
done
same_adapters() {  # the t-SNE on disk covers exactly these adapters (more tasks finished: redone)
  python -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["adapters"] != sys.argv[2:])' \
    "$OUT/tsne/tsne.json" "$@" 2>/dev/null
}
if [ ${#paths[@]} -gt 0 ] && ! same_adapters "${paths[@]}"; then
  echo "[analysis] t-SNE of ${#paths[@]} trajectory adapters"
  lora-diffusion analyze-tsne "${adapters[@]}" --base "$BASE" --data-root "$DATA" --max-rows "$ROWS" \
    --output-dir "$OUT/tsne" --seed 0
fi
mkdir -p "$OUT/learning-curves"
for m in full lora adapter bitfit prefix trajectory; do
  h=$RUNS/sst2/$m/seed-42/training_history.json
  [ -f "$h" ] && lora-diffusion plot --history "$h" --output "$OUT/learning-curves/sst2-$m.png" \
    --title "SST-2, $m (seed 42, reports/tasks)"
done
echo "[analysis] done"
