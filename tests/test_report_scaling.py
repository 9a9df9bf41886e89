"""The scaling report: the gap to full fine-tuning per base size, paired over seeds."""

import json

import pytest

from lora_diffusion.report_scaling import main

VALUES = {2: {"full": [70, 72], "trajectory": [60, 64]}, 4: {"full": [78, 80], "trajectory": [75, 79]}}


def _write(root, layers, method, seed, value, base):
    d = root / f"L{layers}" / method / f"seed-{seed}"
    d.mkdir(parents=True)
    base_dir = root.parent / f"base-L{layers}"
    base_dir.mkdir(exist_ok=True)
    if layers == 2:  # the 4-layer base has no pretraining record (a hub checkpoint, say)
        (base_dir / "pretrain_summary.json").write_text(json.dumps({"validation": {"final": {"ppl_bound": 311.6}}}))
    (d / "result.json").write_text(json.dumps({
        "config": {"task": "sst2", "method": method, "base": str(base_dir), "train": {"seed": seed, "max_steps": 300, "batch_size": 16}},
        "dev": {"primary": "accuracy", "metrics": {"accuracy": value}, "accuracy": value / 100},
        "summary": {"accounting": {"base_parameters": base, "trainable_parameters": 10, "percent_of_base": 1.0}}}))


def test_gaps_by_hand(tmp_path, capsys):
    for layers, methods in VALUES.items():
        for method, values in methods.items():
            for seed, v in zip((42, 43), values):
                _write(tmp_path / "runs", layers, method, seed, v, layers * 1000)
    assert main([str(tmp_path / "runs"), str(tmp_path / "out"), "--command", "bash x.sh"]) == 0
    text = (tmp_path / "out" / "scaling.md").read_text()
    row2 = next(line for line in text.splitlines() if line.startswith("| 2 |"))
    assert "| 2 | 2,000 | 312 |" in row2 and "71.0 +- 1.4 (n=2)" in row2 and "-9.0 +- 1.4" in row2  # gaps -10, -8
    row4 = next(line for line in text.splitlines() if line.startswith("| 4 |"))
    assert "-2.0 +- 1.4" in row4 and "| 4 | 4,000 | - |" in row4  # gaps -3, -1; no pretraining record
    assert (tmp_path / "out" / "scaling.png").stat().st_size > 0 and "bash x.sh" in text


def test_no_runs_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="L<layers>"):
        main([str(tmp_path), str(tmp_path / "out")])
