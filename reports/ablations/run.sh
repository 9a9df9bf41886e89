#!/usr/bin/env bash
# Every ablation of issue #14 item 2, one grid study per factor, then their reports.
# Usage (from the repository root): bash reports/ablations/run.sh <base dir> [data root] [part]
#   part: factors (the trajectory ablations), data-efficiency (every method), or all (default)
# Idempotent and resumable: finished runs are skipped, interrupted ones resume.
set -euo pipefail
BASE=${1:?usage: bash reports/ablations/run.sh <base dir> [data root] [factors|data-efficiency|all]}
DATA=${2:-../shared/data}
PART=${3:-all}
case $PART in factors|data-efficiency|all) ;; *) echo "part must be factors, data-efficiency or all, got '$PART'" >&2; exit 2;; esac
LD="lora-diffusion"
OUT=reports/ablations/runs
study() {  # <factor> <grid...>
  local factor=$1; shift
  $LD study --config reports/ablations/study.yaml --base "$BASE" --data-root "$DATA" \
    --output-dir "$OUT/$factor" --quiet "$@"
}
if [ "$PART" != data-efficiency ]; then
study ranks --grid 'method_options.ranks=[64,32,8],[8,8,8],[32,32,32],[64,64,64],[8,32,64]'
study modules --grid 'method_options.num_modules=1,2,4'
study lambda_rank --grid 'method_options.lambda_rank=0,0.001,0.01,0.1,1,10'  # proximal: lr x lambda per step
study lambda_orth --grid 'method_options.lambda_orth=0,0.001,0.01,0.1'
study banks --grid 'method_options.shared_bank=false,true' --set 'method_options.trajectory.ranks=[32,32,32]'
study sigmas --grid 'method_options.sigmas=[1.0,0.5,0.25],[1.0,1.0,1.0],[0.25,0.5,1.0]'
study encoder --grid 'method_options.encoder=trunk,separate'
study steps --grid 'diffusion_steps=20,500'  # the default point: the base's T = 100
study schedule --grid 'diffusion_schedule=cosine,loglinear'  # default: the base's linear
fi
if [ "$PART" != data-efficiency ]; then  # the modules on free text: lambda_rank 10 turns them off
  $LD study --config reports/ablations/modules_off.yaml --base "$BASE" --data-root "$DATA" \
    --output-dir "$OUT/modules_off" --quiet --grid 'method_options.lambda_rank=0.01,10'
fi
if [ "$PART" != data-efficiency ]; then  # what the penalties did to the modules (seed 42's adapters; no data)
  for factor in lambda_rank lambda_orth modules_off; do
    for d in "$OUT"/$factor/*/trajectory*/seed-42/adapter; do
      [ -f "$d/adapter_config.json" ] || continue
      method=$(basename "$(dirname "$(dirname "$d")")")
      point=$(basename "$(dirname "$(dirname "$(dirname "$d")")")")
      $LD analyze-rank --over factors --adapter "$d" --base "$BASE" \
        --output-dir "reports/ablations/$factor/factors/$method/$point" > /dev/null
    done
  done
fi
[ "$PART" != factors ] && $LD study --config reports/ablations/data_efficiency.yaml --base "$BASE" --data-root "$DATA" \
  --output-dir "$OUT/data_efficiency" --quiet --grid 'max_train_rows=673,6734,0'
for d in "$OUT"/*/; do
  [ -f "$d/grid.json" ] || continue
  f=$(basename "$d")
  $LD report --study "$d" --output "reports/ablations/$f" \
    --study-command "bash reports/ablations/run.sh $BASE $DATA (factor $f)"
done
python -m lora_diffusion.report_grid reports/ablations/summary.md \
  reports/ablations/{ranks,modules,lambda_rank,lambda_orth,banks,sigmas,encoder,steps,schedule,modules_off,data_efficiency}
