"""What the repository keeps: study records are committed, saved weights and checkpoints are not.

The bottleneck-adapter method is registered as ``adapter``, the same name as every run's saved-weights
directory (``<run dir>/adapter/``); an ignore rule on ``adapter/`` directories once dropped that
method's records from every study (its rows stood in the reports with no file behind them).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

KEPT = (
    "reports/tasks/runs/sst2/adapter/seed-42/result.json",
    "reports/tasks/runs/sst2/adapter/seed-42/predictions_dev.jsonl",
    "reports/tasks/runs/sst2/adapter/seed-42/training_history.json",
    "reports/ablations/runs/ranks/method_options.ranks=8-8-8/trajectory/seed-42/result.json",
    "reports/composition/runs/single/sst2_text/adapter/result.json",
    "reports/composition/runs/single/sst2_text/adapter/training_summary.json",
    "reports/composition/runs/zeroshot/sst2_trec/router-pair/eval/metrics.json",
)
IGNORED = (
    "reports/tasks/runs/sst2/adapter/seed-42/adapter/adapter_config.json",
    "reports/tasks/runs/sst2/adapter/seed-42/adapter/adapter_model.safetensors",
    "reports/tasks/runs/sst2/full/seed-42/adapter/model/model.safetensors",
    "reports/tasks/runs/sst2/lora/seed-42/adapter/peft/adapter_model.safetensors",
    "reports/tasks/runs/sst2/lora/seed-42/checkpoints/step-100/state.pt",
    "reports/tasks/runs/sst2/lora/.seed-42.lock",
    "reports/composition/runs/single/sst2_text/adapter/adapter/adapter_config.json",
    "reports/composition/runs/zeroshot/sst2_trec/router-pair/adapter/composition.json",
    "reports/generation-speed/runs/xsum-lora/.resume-0.json",
)


def _ignored(paths: tuple[str, ...]) -> set[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(paths),
                         capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr
    return set(out.stdout.split())


def test_study_records_are_committed_even_for_the_adapter_method():
    assert _ignored(KEPT) == set()


def test_saved_weights_checkpoints_locks_and_resume_files_are_not():
    assert _ignored(IGNORED) == set(IGNORED)
