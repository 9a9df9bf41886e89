#!/usr/bin/env bash
# The measured composition study of issue #12 (items 4-6): single-task adapters, upper bounds,
# the jointly trained modules with the router, routers over frozen adapters, every composition
# mode and merge on the zero-shot composite tasks, the serving cost, then the report.
#
# Usage: bash reports/composition/run.sh <base dir> [data root] [steps]
#   data root: the folder holding sst2/, trec/, ag_news/ (default ../shared/data, from the repository root)
#   steps:     training steps of every run (default 1000); seed 42, batch 16 for every run
# Idempotent and resumable: a step whose output holds its result file (result.json, metrics.json,
# composition.json, the bench's JSON) is skipped; a run directory holding checkpoints is resumed
# (--resume); one holding only a crashed run's adapter is redone (--overwrite).
# Workers: two calls may run side by side (one per core). Each step is locked (.<dir>.lock beside
# it); a step held by the other call, or whose inputs are not finished yet, is left for a later
# call (listed as "== busy" / "== wait", and "== incomplete" at the end): call again until none is.
#
# Environment (defaults are the study's; the test shrinks them):
#   TRAIN_ROWS=0          max_train_rows of every run (0: all)
#   EVAL_ROWS=0           rows of each composite task's test split scored (0: all 500)
#   TEXT_EVAL_ROWS=1000   rows of each *_text task's test split scored (a fixed seeded sample, seed 0:
#                         all of SST-2 dev (872) and TREC test (500), 1,000 of AG News test's 7,600)
#   DENSITY=0.5           kept fraction of the TIES / DARE merges (compose has no default)
#   SAVE_EVERY=100        checkpoint interval
#   BENCH_ARGS=""         extra flags of python -m lora_diffusion.bench.composition
#   COMPOSITION_RUNS, COMPOSITION_REPORT   output folders (default reports/composition/runs, reports/composition)
#   LD, PYTHON            the CLI and the interpreter (default lora-diffusion, python)
set -euo pipefail
USAGE="usage: bash reports/composition/run.sh <base dir> [data root] [steps]"
[[ $# -ge 1 && $# -le 3 ]] || { echo "$USAGE" >&2; exit 2; }
INVOCATION="bash reports/composition/run.sh $*"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
abs() { if [[ -e $1 ]]; then (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); else echo "$1"; fi; }
BASE=$(abs "$1")  # a directory (made absolute), or a hub id / 'minilm' as given
if [[ $# -ge 2 ]]; then DATA=$(abs "$2"); else DATA="$ROOT/../shared/data"; fi
STEPS=${3:-1000}
[[ $STEPS =~ ^[1-9][0-9]*$ ]] || { echo "steps must be a positive integer, got '$STEPS'" >&2; exit 2; }
ENV_SET=""
for v in TRAIN_ROWS EVAL_ROWS TEXT_EVAL_ROWS DENSITY SAVE_EVERY BENCH_ARGS; do
  if [[ -v $v ]]; then ENV_SET+="$v='${!v}' "; fi
done
cd "$ROOT"
TRAIN_ROWS=${TRAIN_ROWS:-0}
EVAL_ROWS=${EVAL_ROWS:-0}
TEXT_EVAL_ROWS=${TEXT_EVAL_ROWS:-1000}
DENSITY=${DENSITY:-0.5}
SAVE_EVERY=${SAVE_EVERY:-100}
read -r -a BENCH_X <<< "${BENCH_ARGS:-}"
RUNS=${COMPOSITION_RUNS:-reports/composition/runs}
REPORT_DIR=${COMPOSITION_REPORT:-reports/composition}
LD=${LD:-lora-diffusion}
PY=${PYTHON:-python}
SEED=42
declare -A LR=([trajectory]=1e-3 [lora]=5e-4 [adapter]=5e-4 [full]=5e-5)
PARTS=(sst2 trec ag_news)                     # the single tasks, as *_text (the composite tasks' layout)
COMPOSITES=(sst2_trec ag_news_sst2 trec_ag_news)
declare -A FIRST=([sst2_trec]=sst2 [ag_news_sst2]=ag_news [trec_ag_news]=trec)
declare -A SECOND=([sst2_trec]=trec [ag_news_sst2]=sst2 [trec_ag_news]=ag_news)
ALL_TEXT=sst2_text,trec_text,ag_news_text

mkdir -p "$RUNS"
echo "${ENV_SET}${INVOCATION}" > "$RUNS/command.txt"  # the exact command, non-default settings first

single() { echo "$RUNS/single/$1_text/$2/adapter"; }  # <part> <method>: a single-task adapter

PENDING=()  # steps left for a later call: another worker holds them, or their inputs are not finished yet

claim() {  # <dir>: lock <dir> for this worker (fd CLAIM; released by release or at exit); 1 if another holds it
  mkdir -p "$(dirname "$1")"
  exec {CLAIM}>"$(dirname "$1")/.$(basename "$1").lock"
  if flock -n "$CLAIM"; then return 0; fi
  exec {CLAIM}>&-
  echo "== busy $1 (another worker)"; PENDING+=("$1"); return 1
}
release() { exec {CLAIM}>&-; }

ready() {  # <what> <files...>: 0 when every file exists, else the step waits for a later call
  local what=$1 f; shift
  for f in "$@"; do
    if [[ ! -e $f ]]; then echo "== wait $what (needs $f)"; PENDING+=("$what"); return 1; fi
  done
}

finetune() {  # <run dir> <finetune flags...>: skipped when finished, resumed from its checkpoints
  local dir=$1; shift
  if [[ -f $dir/result.json ]]; then echo "== skip $dir (finished)"; return 0; fi
  claim "$dir" || return 0
  if [[ -f $dir/result.json ]]; then release; echo "== skip $dir (finished)"; return 0; fi  # by the other worker
  local state=()
  if compgen -G "$dir/checkpoints/step-*" > /dev/null; then state=(--resume)
  elif [[ -e $dir/adapter || -e $dir/training_summary.json ]]; then state=(--overwrite); fi
  echo "== finetune $dir ${state[*]-}"
  "$LD" finetune --base "$BASE" --data-root "$DATA" --output-dir "$dir" --steps "$STEPS" --seed "$SEED" \
    --set train.batch_size=16 --set train.micro_batch_size=16 --set train.save_every="$SAVE_EVERY" \
    --set max_train_rows="$TRAIN_ROWS" --quiet "$@" ${state[@]+"${state[@]}"}
  release
}

evaluate() {  # <output dir> <adapter> <task> <rows>: waits until the adapter's run has finished
  if [[ -f $1/metrics.json ]]; then echo "== skip $1 (evaluated)"; return 0; fi
  ready "$1" "$(done_file "$2")" || return 0
  claim "$1" || return 0
  if [[ -f $1/metrics.json ]]; then release; echo "== skip $1 (evaluated)"; return 0; fi
  echo "== evaluate $2 on $3 -> $1"
  "$LD" evaluate --adapter "$2" --base "$BASE" --task "$3" --data-root "$DATA" --eval-rows "$4" --seed "$SEED" \
    --output-dir "$1" --quiet
  release
}

done_file() {  # <adapter dir>: the file that says it is complete (its run's result, or the compose record)
  if [[ $(basename "$1") == adapter && $1 == */zeroshot/* ]]; then echo "$1/composition.json"
  else echo "$(dirname "$1")/result.json"; fi
}

composed() {  # <composite> <column> <compose flags...>: compose into <column>/adapter, evaluate into <column>/eval
  local task=$1 col="$RUNS/zeroshot/$1/$2"; shift 2
  if [[ -f $col/eval/metrics.json ]]; then echo "== skip $col (evaluated)"; return 0; fi
  if [[ ! -f $col/adapter/composition.json ]]; then
    local arg sources=() over=()
    for arg in "$@"; do  # the adapters (and router) it composes must be finished
      if [[ $arg == *=* && $arg == */* ]]; then
        local pairs pair; IFS=, read -r -a pairs <<< "$arg"
        for pair in "${pairs[@]}"; do sources+=("$(done_file "${pair#*=}")"); done
      elif [[ $arg == "$RUNS"/* ]]; then sources+=("$(done_file "$arg")"); fi
    done
    ready "$col" "${sources[@]}" || return 0
    claim "$col/adapter" || return 0
    if [[ -f $col/adapter/composition.json ]]; then release; evaluate "$col/eval" "$col/adapter" "$task" "$EVAL_ROWS"; return 0; fi
    [[ -d $col/adapter ]] && over=(--overwrite)  # a compose that stopped half way
    echo "== compose $col $*"
    "$LD" compose --base "$BASE" --output "$col/adapter" "$@" ${over[@]+"${over[@]}"} > /dev/null
    release
  fi
  evaluate "$col/eval" "$col/adapter" "$task" "$EVAL_ROWS"
}

# a. single-task adapters on each part, in the composite tasks' 4-token free-text layout
for part in "${PARTS[@]}"; do
  for method in trajectory lora adapter; do
    finetune "$RUNS/single/${part}_text/$method" --method "$method" --task "${part}_text" --lr "${LR[$method]}" \
      --set eval_rows="$TEXT_EVAL_ROWS"
  done
done

# b. the upper bound: a model trained on each composite task itself (never zero-shot)
for c in "${COMPOSITES[@]}"; do
  for method in full trajectory; do
    finetune "$RUNS/upper/$c/$method" --method "$method" --task "$c" --lr "${LR[$method]}" --set eval_rows="$EVAL_ROWS"
  done
done

# c. task modules trained jointly with the router on mixed-task batches (Eq. 23); result.json holds
#    each task under router / uniform / oracle and the router's accuracy
finetune "$RUNS/joint" --tasks "$ALL_TEXT" --router --lr "${LR[trajectory]}" --set eval_rows="$TEXT_EVAL_ROWS"

# d. the router alone over the frozen single-task trajectory adapters: over all three tasks, and over
#    each composite's pair (compose --router needs a router over exactly the composed adapters, same order)
init3="sst2_text=$(single sst2 trajectory),trec_text=$(single trec trajectory),ag_news_text=$(single ag_news trajectory)"
ready "$RUNS/router" "$(done_file "$(single sst2 trajectory)")" "$(done_file "$(single trec trajectory)")" \
  "$(done_file "$(single ag_news trajectory)")" &&
finetune "$RUNS/router" --tasks "$ALL_TEXT" --router --freeze-adapters --init-adapters "$init3" \
  --lr "${LR[trajectory]}" --set eval_rows="$TEXT_EVAL_ROWS"
for c in "${COMPOSITES[@]}"; do
  a=${FIRST[$c]} b=${SECOND[$c]}
  ready "$RUNS/router-pair/$c" "$(done_file "$(single "$a" trajectory)")" "$(done_file "$(single "$b" trajectory)")" &&
  finetune "$RUNS/router-pair/$c" --tasks "${a}_text,${b}_text" --router --freeze-adapters \
    --init-adapters "${a}_text=$(single "$a" trajectory),${b}_text=$(single "$b" trajectory)" \
    --lr "${LR[trajectory]}" --set eval_rows="$TEXT_EVAL_ROWS"
done

# e. zero-shot composition on each composite task (pair a, b). Oracle is not applicable: a composite
#    row belongs to both tasks, and oracle routes each row to one.
for c in "${COMPOSITES[@]}"; do
  a=${FIRST[$c]} b=${SECOND[$c]}
  pair() { echo "${a}_text=$(single "$a" "$1"),${b}_text=$(single "$b" "$1")"; }
  composed "$c" uniform --adapters "$(pair trajectory)" --mode uniform
  composed "$c" weights-1-1 --adapters "$(pair trajectory)" --weights 1,1
  composed "$c" router-pair --adapters "$(pair trajectory)" --router "$RUNS/router-pair/$c/adapter"
  # the three-task router over the three frozen adapters (compose --router over all three equals this adapter)
  evaluate "$RUNS/zeroshot/$c/router-3/eval" "$RUNS/router/adapter" "$c" "$EVAL_ROWS"
  # the jointly trained modules and router (its saved mode: router)
  evaluate "$RUNS/zeroshot/$c/joint-router/eval" "$RUNS/joint/adapter" "$c" "$EVAL_ROWS"
  composed "$c" trajectory-merge-average --adapters "$(pair trajectory)" --mode merge-average
  for combo in linear cat ties dare_linear dare_ties; do
    dens=()
    [[ $combo == ties || $combo == dare_* ]] && dens=(--density "$DENSITY")
    composed "$c" "lora-merge-$combo" --adapters "$(pair lora)" --mode "merge-$combo" --weights 1,1 \
      --seed 0 ${dens[@]+"${dens[@]}"}
  done
  composed "$c" adapter-merge-average --adapters "$(pair adapter)" --mode merge-average
  for method in trajectory lora adapter; do
    evaluate "$RUNS/zeroshot/$c/first-alone-$method/eval" "$(single "$a" "$method")" "$c" "$EVAL_ROWS"
    evaluate "$RUNS/zeroshot/$c/second-alone-$method/eval" "$(single "$b" "$method")" "$c" "$EVAL_ROWS"
  done
  for method in full trajectory; do
    evaluate "$RUNS/zeroshot/$c/upper-$method/eval" "$RUNS/upper/$c/$method/adapter" "$c" "$EVAL_ROWS"
  done
done

# f. the multi-task table reads the single runs' and the joint / router runs' result.json (nothing to run)

# g. serving cost: M adapters composed (one trunk pass per step) vs M separate runs
if [[ -f $RUNS/serving/serving_cost.json ]]; then
  echo "== skip serving cost (measured)"
elif claim "$RUNS/serving"; then
  if [[ -f $RUNS/serving/serving_cost.json ]]; then echo "== skip serving cost (measured)"
  else
    echo "== serving cost"
    "$PY" -m lora_diffusion.bench.composition --base "$BASE" --output "$RUNS/serving/serving_cost.json" \
      --counts 2,4,8 ${BENCH_X[@]+"${BENCH_X[@]}"}
  fi
  release
fi

# h. the report (regenerated on every call; partial while the study runs)
"$PY" -m lora_diffusion.report_composition "$RUNS" "$REPORT_DIR"
if (( ${#PENDING[@]} )); then
  echo "== incomplete: ${#PENDING[@]} steps held by another worker or waiting for their inputs; call again when it is done"
fi
