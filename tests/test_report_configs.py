"""Every study configuration committed under reports/ loads, and every run it plans is a valid run
configuration (a typo in a shipped YAML would otherwise surface hours into a queued study)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_diffusion.config import load_config, to_dict
from lora_diffusion.methods import method_config
from lora_diffusion.study import StudyConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "reports").rglob("*.yaml") if "runs" not in p.parts)


def test_the_reports_hold_study_configs():
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_committed_study_config_loads_and_plans_valid_runs(path):
    cfg = load_config(StudyConfig, path)
    plan = cfg.plan()
    assert plan, f"{path}: plans no run"
    for task, method, seed in plan:
        run = cfg.run_config(method, seed, task)
        method_config(run.method, to_dict(run)["method_options"])  # unknown option or preset: raises
        assert run.train.max_steps > 0
