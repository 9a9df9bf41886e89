"""The quality study's report on a hand-made study directory (no training)."""

from __future__ import annotations

import json

import pytest

from lora_diffusion.cli import main
from lora_diffusion.report_quality import choose_variant, step_ratio, write_quality_report
from lora_diffusion.report_tasks import _constant_note, constant_baseline
from lora_diffusion.stats import compare_paired

SEEDS = (42, 43, 44)
# task -> method -> (reported-split primary per seed, validation primary per seed, train s/step,
#                    % of base trainable, wall time per seed)
STUDY = {
    "sst2": {
        "full": ([90, 91, 92], [88, 89, 90], 1.0, 100.0, [1000] * 3),
        "lora": ([88, 89, 90], [86, 87, 88], 0.5, 1.0, [500] * 3),
        # the best reported mean of the family, but the worst on validation: never chosen
        "trajectory": ([92, 92.5, 93.5], [85, 86, 87], 0.3, 0.5, [300, 330, 360]),
        "trajectory@deep": ([90.5, 91, 91.5], [89, 90, 91], 0.35, 1.5, [350] * 3),
    },
    "trec": {  # lora not run yet
        "full": ([80, 82, 84], [80, 80, 80], 2.0, 100.0, [2000] * 3),
        "trajectory": ([85, 85, 85], [70, 71, 72], 0.15, 0.5, [150] * 3),
        "trajectory@deep": ([79, 80, 81], [75, 76, 77], 1.0, 1.5, [1000] * 3),
    },
}


def _run(root, task, method, seed, test, val, tps, pct, wall):
    run = root / task / method / f"seed-{seed}"
    run.mkdir(parents=True)
    stopped = 900 if (method, seed) == ("full", 42) else None
    summary = {"steps": stopped or 1000, "wall_time_s": wall, "mean_time_per_step_s": tps,
               "selection": {"select_metric": "primary", "selected_step": 600 + 100 * (seed - 42),
                             "selected_value": val, "early_stopped_at": stopped, "patience": 4},
               "accounting": {"method": method, "trainable_parameters": int(1000 * pct), "percent_of_base": pct}}
    result = {"config": {"task": task, "method": method, "train": {"seed": seed}}, "eval_split": "dev",
              "dev": {"primary": "accuracy", "metrics": {"accuracy": test, "examples": 100}},
              "validation": {"generation": {"primary": "accuracy", "metrics": {"accuracy": val}}, "rows": 100},
              "summary": summary}
    # a learning curve: eval/primary = 60 + step / 50 + (seed - 42) at steps 100..1000, between loss logs
    hist = []
    for step in range(100, 1001, 100):
        hist.append({"step": step - 50, "loss": 1.0, "time_per_step": tps})
        hist.append({"step": step, "eval/primary": 60 + step / 50 + (seed - 42), "eval/denoising_accuracy": 0.5})
    (run / "result.json").write_text(json.dumps(result))
    (run / "training_summary.json").write_text(json.dumps(summary))
    (run / "training_history.json").write_text(json.dumps(hist))


def _record(root, task, method, grid, scores, chosen, search_overrides=None):
    path = root / "lr-search" / task / f"{method}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "method": method, "seed": 42, "grid": grid,
                                "validation_primary": scores, "chosen_lr": chosen, "rule": "highest",
                                "search_overrides": search_overrides or {}}))


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "study"
    for task, methods in STUDY.items():
        for method, (test, val, tps, pct, wall) in methods.items():
            for i, seed in enumerate(SEEDS):
                _run(root, task, method, seed, test[i], val[i], tps, pct, wall[i])
    _record(root, "sst2", "full", [2e-5, 5e-5, 1e-4], {"2e-05": 85.0, "5e-05": 88.0, "0.0001": None}, 5e-5)
    _record(root, "trec", "full", [2e-5, 5e-5], {"2e-05": 81.0, "5e-05": 80.0}, 2e-5)
    _record(root, "sst2", "trajectory@deep", [3e-4, 1e-3, 3e-3], {"0.0003": 80.0, "0.001": 90.0, "0.003": 89.0}, 1e-3,
            {"train.max_steps": 300})
    # a search run: read only through its record, never as a result of the study
    _run(root / "lr-search" / "lr=5e-05", "sst2", "full", 42, 10.0, 10.0, 9.0, 100.0, 9)
    return root


def _row(report: str, start: str) -> str:
    rows = [line for line in report.splitlines() if line.startswith(start)]
    assert len(rows) == 1, (start, rows)
    return rows[0]


def test_quality_report_tables(study, tmp_path):
    path = write_quality_report(study, tmp_path / "rep", command="lora-diffusion report ...")
    report = path.read_text()
    assert "Command: `lora-diffusion report ...`" in report and f"Study: `{study}`" in report
    assert "validation rows" in report and "separate runs" in report
    # target: trajectory@deep is chosen on validation (90.0 > 86.0) though trajectory's test mean is higher
    sst2 = _row(report, "| sst2 (accuracy) |")
    p = compare_paired([90.5, 91, 91.5], [90, 91, 92])["p"]
    assert sst2 == ("| sst2 (accuracy) | trajectory@deep (90.0) | 91.0 +- 0.5 (n=3) | 91.0 +- 1.0 (n=3) | 100.0 | yes | "
                    f"1.50 | yes | 0.35 | yes | +0.0 points, paired_t p = {p:.3g} (n=3) | **met** |")
    trec = _row(report, "| trec (accuracy) |")
    assert trec.startswith("| trec (accuracy) | trajectory@deep (76.0) | 80.0 +- 1.0 (n=3) | 82.0 +- 2.0 (n=3) | "
                           "97.6 | no | 1.50 | yes | 0.50 | no | -2.0 points,")
    assert trec.endswith("| **not met** |")
    # the main tables of report_tasks, the search run under lr-search/ left out
    assert "| full | 100,000 (100.00%) | 91.0 +- 1.0 (n=3) | 82.0 +- 2.0 (n=3) | 86.5 |" in report
    assert "| lora | 1,000 (1.00%) | 89.0 +- 1.0 (n=3) | - | - |" in report
    assert "| sst2 | trajectory@deep | +0.0 |" in report
    # learning-rate search
    assert "| sst2 | full | 42 | 2e-05: 85.0, **5e-05: 88.0**, 0.0001: diverged | 5e-05 | the study's |" in report
    assert "| sst2 | trajectory@deep | 42 | 0.0003: 80.0, **0.001: 90.0**, 0.003: 89.0 | 0.001 | train.max_steps=300 |" in report
    assert "| trec | full | 42 | **2e-05: 81.0**, 5e-05: 80.0 | 2e-05 (edge) | the study's |" in report
    # budgets: selected steps 600/700/800, steps 900/1000/1000, one seed early-stopped
    assert "| sst2 | full | 3 | 700 | 967 | 1/3 | 1000 | 1.000 |" in report
    assert "| trec | trajectory | 3 | 700 | 1000 | 0/3 | 150 | 0.150 |" in report
    # equal wall clock: W = 1000 steps x 0.3 s = 300 s on sst2 (its wall times, 300-360 s, hold
    # evaluations and pauses: not counted); last evaluation with step x median s/step <= W
    assert "| sst2 | 300 | full | 1.000 | 300 | 67.0 | 89.0 |" in report  # 300 x 1.0 <= 300 < 400
    assert "| sst2 | 300 | lora | 0.500 | 600 | 73.0 | 87.0 |" in report  # 600 x 0.5 <= 300 < 700 x 0.5
    assert "| sst2 | 300 | trajectory | 0.300 | 1000 | 81.0 | 86.0 |" in report
    assert "| sst2 | 300 | trajectory@deep | 0.350 | 800 | 77.0 | 90.0 |" in report  # 900 x 0.35 = 315 > 300
    assert "| trec | 150 | full | 2.000 | - | - | 80.0 |" in report  # 100 x 2.0 > 150: nothing fits
    assert "| trec | 150 | trajectory@deep | 1.000 | 100 | 63.0 | 76.0 |" in report
    for png in ("curves_sst2.png", "curves_trec.png", "pareto.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 1000 and f"]({png})" in report


def test_step_time_from_bench(study, tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"training": {"full": {"median_s": 1.0}, "trajectory@deep": {"median_s": 0.2}}}))
    report = write_quality_report(study, tmp_path / "rep", bench=bench).read_text()
    assert "| 0.20 (bench) | yes |" in _row(report, "| sst2 (accuracy) |")
    assert "side-by-side benchmark" in report
    assert _row(report, "| trec (accuracy) |").endswith("| **not met** |")  # the ratio still fails


def test_step_time_under_bf16_from_the_bench_bf16_entries():
    """Runs trained under bf16 autocast are timed against the bench's ``+bf16`` entries where it has
    both methods so; fp32 runs (or a bench without them) use the plain entries."""
    timed = {"training": {"full": {"median_s": 1.0}, "side": {"median_s": 0.2},
                          "full+bf16": {"median_s": 0.5}, "side+bf16": {"median_s": 0.15}}}
    def runs(precision):
        return {"side": {42: {"config": {"train": {"mixed_precision": precision}}}}}
    assert step_ratio(runs("bf16"), "side", timed) == (0.3, "bench")
    assert step_ratio(runs("no"), "side", timed) == (0.2, "bench")
    del timed["training"]["side+bf16"]
    assert step_ratio(runs("bf16"), "side", timed) == (0.2, "bench")


def _predictions(run, split, labels):
    rows = [{"id": str(i), "prediction": "x", "references": [w], **({} if w is None else {"label": w})}
            for i, w in enumerate(labels)]
    (run / f"predictions_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_constant_prediction(study, tmp_path):
    """The most frequent gold label's share of the reported split, read from a run's predictions,
    and the variant's share of full fine-tuning's gain over it."""
    assert constant_baseline(study, "trec") is None  # no predictions file yet
    _predictions(study / "trec" / "full" / "seed-42", "test", ["human"] * 70 + ["entity"] * 20 + ["number"] * 10)
    assert constant_baseline(study, "trec") == {"label": "human", "accuracy": 70.0, "rows": 100}
    assert "`human` to every row" in _constant_note(study, "trec") and "70.0%" in _constant_note(study, "trec")
    _predictions(study / "sst2" / "full" / "seed-42", "dev", [None] * 5)  # free text: no label
    assert constant_baseline(study, "sst2") is None and _constant_note(study, "sst2") == ""
    report = write_quality_report(study, tmp_path / "rep").read_text()
    # trec: full 82.0, variant trajectory@deep 80.0: (80 - 70) / (82 - 70) = 83.3% of full's gain
    assert "| trec | 100 | human | 70.0 | 82.0 | trajectory@deep 80.0 | +12.0 | 83.3 |" in report
    assert "| sst2 | " not in report.split("## Primary metric")[0].split("best constant prediction")[1]


def test_partial_study_and_missing_validation(tmp_path):
    run = {"dev": {"primary": "accuracy", "metrics": {"accuracy": 50.0}},
           "summary": {"accounting": {"trainable_parameters": 10, "percent_of_base": 100.0}}}
    assert choose_variant({"full": {42: run}, "trajectory": {42: run}}) == (None, None)
    with_val = {**run, "validation": {"generation": {"primary": "accuracy", "metrics": {"accuracy": 40.0}}}}
    assert choose_variant({"trajectory": {42: run}, "trajectory@mix": {42: with_val}}) == ("trajectory@mix", 40.0)
    root = tmp_path / "s"
    (root / "lr-search").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no <task>/<method>/seed-"):
        write_quality_report(root, tmp_path / "rep")
    with pytest.raises(FileNotFoundError, match="no such study directory"):
        write_quality_report(tmp_path / "missing", tmp_path / "rep")
    # one run, no validation, no history, no selection: every missing cell reads "-"
    r = root / "mrpc" / "full" / "seed-42"
    r.mkdir(parents=True)
    (r / "result.json").write_text(json.dumps({"config": {"task": "mrpc", "train": {"seed": 42}}, **run}))
    report = write_quality_report(root, tmp_path / "rep").read_text()
    assert "| mrpc (accuracy) | - (no validation score yet) | - | 50.0 |" in report
    assert "| mrpc | - | (no trajectory run yet) |" in report and "(no learning-rate search record yet)" in report
    assert "mrpc: no validation evaluation recorded yet." in report


def test_cli_report_dispatches_to_quality(study, tmp_path, capsys):
    assert main(["report", "--study", str(study), "--output", str(tmp_path / "out")]) == 0
    assert "## Equal wall-clock comparison" in (tmp_path / "out" / "report.md").read_text()
    assert main(["report", "--study", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    assert "no such study directory" in capsys.readouterr().err
