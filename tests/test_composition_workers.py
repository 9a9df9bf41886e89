"""``reports/composition/run.sh`` called twice side by side (one worker per core): every step runs
exactly once, a step waits for its inputs, and a later call finishes what was left. The CLI and the
interpreter are stand-ins that only write each step's result file, so this checks the script's
locking and ordering, not the training (``test_report_composition`` runs it for real)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "reports" / "composition" / "run.sh"

FAKE_CLI = r'''#!/usr/bin/env bash
# stand-in for lora-diffusion: refuses unfinished inputs, writes each command's result file
set -euo pipefail
cmd=$1; shift; out=""; args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in --output-dir|--output) out=${args[i+1]} ;; esac
done
# evaluate / compose / router runs must only start once their inputs are finished
prev=""
for a in "$@"; do
  [[ $prev == --output-dir || $prev == --output ]] && { prev=$a; continue; }
  prev=$a
  for p in ${a//,/ }; do
    p=${p#*=}
    if [[ $p == */zeroshot/*/adapter ]]; then
      [[ -f $p/composition.json ]] || { echo "input not composed: $p" >&2; exit 3; }
    elif [[ $p == */single/*/adapter || $p == */upper/*/adapter || $p == */router*/adapter || $p == */joint/adapter ]]; then
      [[ -f $(dirname "$p")/result.json ]] || { echo "input not finished: $p" >&2; exit 3; }
    fi
  done
done
sleep 0.05
mkdir -p "$out"
case $cmd in
  finetune) mkdir -p "$out/adapter"; echo '{}' > "$out/result.json" ;;
  evaluate) echo '{}' > "$out/metrics.json" ;;
  compose) echo '{}' > "$out/composition.json" ;;
esac
flock "$LOG" -c "echo '$cmd $out' >> '$LOG'"
'''

FAKE_PY = r'''#!/usr/bin/env bash
# stand-in for python: the serving bench writes its JSON; the report is a no-op
if [[ $2 == lora_diffusion.bench.composition ]]; then
  while [[ $# -gt 0 ]]; do [[ $1 == --output ]] && { mkdir -p "$(dirname "$2")"; echo '{}' > "$2"; }; shift; done
  flock "$LOG" -c "echo 'bench serving' >> '$LOG'"
fi
'''

def _scripts(tmp: Path) -> dict[str, str]:
    cli, py = tmp / "fake-cli", tmp / "fake-python"
    cli.write_text(FAKE_CLI, encoding="utf-8")
    py.write_text(FAKE_PY, encoding="utf-8")
    cli.chmod(0o755)
    py.chmod(0o755)
    log = tmp / "steps.log"
    log.touch()
    return {**os.environ, "LD": str(cli), "PYTHON": str(py), "LOG": str(log),
            "COMPOSITION_RUNS": str(tmp / "runs"), "COMPOSITION_REPORT": str(tmp / "report")}


def _start(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(RUN_SH), "BASE", "DATA", "3"], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _call(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUN_SH), "BASE", "DATA", "3"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_two_workers_split_the_steps_and_a_later_call_finishes(tmp_path):
    env = _scripts(tmp_path)
    workers = [_start(env, tmp_path), _start(env, tmp_path)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, out[-2000:] + err[-2000:]
    last = _call(env, tmp_path)
    assert last.returncode == 0, last.stdout[-2000:] + last.stderr[-2000:]
    for _ in range(3):  # a step that waited on an input finished late by the other worker: call again
        if "== incomplete" not in last.stdout:
            break
        last = _call(env, tmp_path)

    steps = Path(env["LOG"]).read_text().splitlines()
    assert len(steps) == len(set(steps)), "a step ran twice"
    kinds = [s.split()[0] for s in steps]
    # 9 single + 6 upper + joint + router + 3 router pairs; 10 composed columns and 20 evaluations per composite
    assert kinds.count("finetune") == 20
    assert kinds.count("compose") == 3 * 10
    assert kinds.count("evaluate") == 3 * 20
    assert kinds.count("bench") == 1
    both = outputs[0][0] + outputs[1][0]
    assert both.count("== finetune") + last.stdout.count("== finetune") <= 20
    # nothing is left: a further call runs nothing and reports nothing pending
    again = _call(env, tmp_path)
    assert again.returncode == 0 and "== incomplete" not in again.stdout
    assert "== finetune" not in again.stdout and "== evaluate" not in again.stdout
    assert Path(env["LOG"]).read_text().splitlines() == steps


def test_a_step_held_by_another_worker_is_left_for_later(tmp_path):
    env = _scripts(tmp_path)
    runs = tmp_path / "runs" / "single" / "sst2_text"
    runs.mkdir(parents=True)
    holder = subprocess.Popen(["flock", str(runs / ".trajectory.lock"), "sleep", "30"])
    try:
        time.sleep(0.3)
        done = _call(env, tmp_path)
    finally:
        holder.kill()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "== busy" in done.stdout and "sst2_text/trajectory" in done.stdout
    assert "== wait" in done.stdout and "== incomplete" in done.stdout
    assert not (runs / "trajectory" / "result.json").exists()
    assert (runs / "lora" / "result.json").is_file()  # the others went on
