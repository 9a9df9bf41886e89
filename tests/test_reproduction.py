"""Reproduction check: metric, first logged loss and row-by-row predictions of cells present in
both study directories, against hand-made records."""

import json

from lora_diffusion.reproduction import compare_runs, main, reproduction_table


def _run(root, cell, acc, loss, preds):
    d = root / cell
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({"dev": {"primary": "accuracy", "metrics": {"accuracy": acc}}}))
    (d / "training_history.json").write_text(json.dumps([{"step": 10, "loss": loss}, {"step": 20, "loss": 1.0}]))
    (d / "predictions_dev.jsonl").write_text("".join(json.dumps({"id": str(i), "prediction": p}) + "\n"
                                                     for i, p in enumerate(preds)))
    return d


def test_compare_runs_by_hand(tmp_path):
    a = _run(tmp_path / "new", "sst2/full/seed-42", 75.0, 2.0, ["pos", "neg", "pos", "neg"])
    b = _run(tmp_path / "old", "sst2/full/seed-42", 50.0, 2.5, ["pos", "neg", "neg", "pos"])
    c = compare_runs(a, b)
    assert c["metric_new"] == 75.0 and c["metric_old"] == 50.0 and c["rows"] == 4
    assert c["identical"] == 0.5 and c["loss_step"] == 10 and abs(c["loss_rel_diff"] - 0.2) < 1e-12


def test_table_covers_only_common_cells(tmp_path):
    _run(tmp_path / "new", "trec/lora/seed-42", 90.0, 1.0, ["a", "b"])
    _run(tmp_path / "old", "trec/lora/seed-42", 90.0, 1.0, ["a", "b"])
    _run(tmp_path / "new", "trec/full/seed-42", 91.0, 1.0, ["a"])  # no earlier record: not listed
    lines = reproduction_table(tmp_path / "new", tmp_path / "old")
    assert len(lines) == 3
    assert lines[2] == "| trec/lora/seed-42 | accuracy | 90.00 | 90.00 | 0.0e+00 (10) | 100.0% of 2 |"
    assert main([str(tmp_path / "new"), str(tmp_path / "old"), str(tmp_path / "r.md")]) == 0
    assert "| trec/lora/seed-42 |" in (tmp_path / "r.md").read_text()
