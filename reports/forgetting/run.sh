#!/usr/bin/env bash
# Forgetting (issue #14 item 1): the NELBO perplexity bound and masked-token accuracy on
# WikiText-2 test, arXiv abstracts and code, for the base and for the seed-42 adapter of every
# method after SST-2 and after SQuAD (the many-task study's runs, reports/tasks/runs), with the
# adapter active; the trajectory method with an empty instruction and with its task's template.
# Usage (from the repository root): bash reports/forgetting/run.sh <base dir> [data root] [max chunks]
# Idempotent: a measurement whose forgetting.json exists is skipped.
set -euo pipefail
BASE=${1:?usage: bash reports/forgetting/run.sh <base dir> [data root] [max chunks]}
DATA=${2:-../shared/data}
CHUNKS=${3:-256}
OUT=reports/forgetting/runs
CORPORA=(--corpus "$DATA/wikitext-2-raw" --corpus "$DATA/arxiv/arxiv_abstracts_3579.csv"
         --corpus "$DATA/code/cpython311_stdlib_toplevel.py.txt")
measure() {  # <name> <args...>
  local name=$1; shift
  [ -f "$OUT/$name/forgetting.json" ] && { echo "[forgetting] $name done, skipped"; return; }
  echo "[forgetting] $name"
  lora-diffusion forgetting "${CORPORA[@]}" --max-chunks "$CHUNKS" --seed 0 --output-dir "$OUT/$name" "$@"
}
measure base --base "$BASE"
for task in sst2 squad; do
  for m in full lora adapter bitfit prefix trajectory; do
    adapter=reports/tasks/runs/$task/$m/seed-42/adapter
    [ -d "$adapter" ] || { echo "[forgetting] $adapter missing (study not finished), skipped"; continue; }
    measure "$task-$m" --adapter "$adapter" --base "$BASE" --base-result "$OUT/base/forgetting.json"
    if [ "$m" = trajectory ]; then
      # the base on the same rows with the same clean prefix (the empty-instruction base is not comparable)
      measure "$task-$m-template" --adapter "$adapter" --base "$BASE" --instruction template --with-base
    fi
  done
  results=()
  for d in "$OUT/$task"-*/; do results+=(--result "$d"); done
  lora-diffusion forgetting-table "${results[@]}" --output "reports/forgetting/$task.md" \
    --title "Forgetting after $task (seed 42 adapters of reports/tasks; $CHUNKS chunks per corpus)"
done
