"""`study --grid`: a 2-point grid x 1 method x 2 seeds runs, is idempotent, and the report holds
both points with the default marked."""

import json

import pytest

from lora_diffusion.cli import main
from lora_diffusion.cli.study import parse_grid, split_values
from lora_diffusion.config import ConfigError
from lora_diffusion.report_grid import NOISE, verdict
from lora_diffusion.study import StudyConfig, grid_points, point_slug

from .test_study import _setup


def test_tiny_grid_runs_is_idempotent_and_reports(tmp_path):
    data = _setup(tmp_path)
    out = tmp_path / "grid"
    args = ["study", "--base", str(tmp_path / "base"), "--data-dir", str(data), "--methods", "bitfit",
            "--seeds", "1,2", "--steps", "2", "--output-dir", str(out), "--quiet",
            "--grid", "max_train_rows=0,20", "--set", "train.batch_size=8", "--set", "train.micro_batch_size=8",
            "--set", "validation_rows=8", "--set", "train.save_every=1"]
    assert main(args) == 0
    done = sorted(out.glob("*/bitfit/seed-*/result.json"))
    assert [p.relative_to(out).parts[0] for p in done] == ["max_train_rows=0"] * 2 + ["max_train_rows=20"] * 2
    small = json.loads((out / "max_train_rows=20" / "bitfit" / "seed-2" / "result.json").read_text())
    assert small["config"]["max_train_rows"] == 20 and small["config"]["train"]["seed"] == 2
    manifest = json.loads((out / "grid.json").read_text())
    assert [(p["slug"], p["default"]) for p in manifest["points"]] == [("max_train_rows=0", True),
                                                                       ("max_train_rows=20", False)]
    stamps = [p.stat().st_mtime_ns for p in [*done, out / "grid.json"]]
    assert main(args) == 0  # second run: everything skipped, nothing rewritten
    assert [p.stat().st_mtime_ns for p in [*done, out / "grid.json"]] == stamps
    assert main(["report", "--study", str(out), "--output", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| max_train_rows=0 **(default)** |" in report and "| max_train_rows=20 |" in report
    assert "(n=2)" in report and "2 seeds, no test" in report
    numbers = json.loads((tmp_path / "rep" / "grid_report.json").read_text())
    assert set(numbers["results"]["sst2/bitfit"]) == {"max_train_rows=0", "max_train_rows=20"}
    assert (tmp_path / "rep" / "grid.png").stat().st_size > 0 and "grid.png" in report
    bitfit = numbers["results"]["sst2/bitfit"]["max_train_rows=20"]["cost"]
    assert len(bitfit["trainable"]) == 2 and bitfit["trainable"][0] > 0 and len(bitfit["step_s"]) == 2
    assert f"| {int(bitfit['trainable'][0]):,} (" in report  # the size column, from the runs' accounting
    assert bitfit["train_rows"] == [20, 20]  # as the runs recorded them; the points differ, so the rows figure
    assert (tmp_path / "rep" / "data_efficiency.png").stat().st_size > 0 and "data_efficiency.png" in report


def test_grid_points_default_added_and_method_defaults_recognised():
    cfg = StudyConfig(methods=["trajectory"], seeds=[1], grid={"method_options.lambda_rank": [0.0, 0.01]})
    points = grid_points(cfg)  # 0.01 is the method's own default
    assert [(p.slug, p.default) for p in points] == [("method_options.lambda_rank=0.0", False),
                                                     ("method_options.lambda_rank=0.01", True)]
    cfg = StudyConfig(methods=["trajectory"], seeds=[1], grid={"method_options.ranks": [[8, 8, 8], [64, 64, 64]],
                                                                "method_options.num_modules": [1]})
    points = grid_points(cfg)
    assert points[0].slug == "default" and points[0].default and len(points) == 3
    assert points[1].slug == "method_options.ranks=8-8-8+method_options.num_modules=1"
    assert point_slug({"train.lr": 1e-3}) == "train.lr=0.001"
    with pytest.raises(ConfigError, match="method_options"):
        grid_points(StudyConfig(methods=["trajectory"], seeds=[1], grid={"method_options.nope": [1]}))


def test_grid_flag_parsing():
    assert split_values("[8,8,8],[64,32,8], 3") == ["[8,8,8]", "[64,32,8]", "3"]
    assert parse_grid(["method_options.ranks=[8,8,8],[64,32,8]", "train.lr=1e-3,0.01"]) == {
        "method_options.ranks": [[8, 8, 8], [64, 32, 8]], "train.lr": ["1e-3", 0.01]}  # as --set reads them
    with pytest.raises(ConfigError, match="expected KEY=V1,V2"):
        parse_grid(["nokey"])


def test_grid_errors_are_one_line(tmp_path, capsys):
    assert main(["study", "--methods", "trajectory", "--grid", "method_options.nope=1,2", "--output-dir",
                 str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert "method_options.nope" in err and len(err.splitlines()) == 1


def test_verdicts():
    assert verdict({1: 50.0, 2: 51.0, 3: 50.5}, {1: 50.2, 2: 50.8, 3: 50.4}, 1)["verdict"].startswith(NOISE)
    far = verdict({1: 90.0, 2: 91.0, 3: 90.5, 4: 90.7}, {1: 50.0, 2: 50.9, 3: 50.4, 4: 50.8}, 1)
    assert far["verdict"].startswith("distinguishable") and far["difference"] == pytest.approx(40.025)
    assert verdict({1: 50.0}, {1: 60.0}, 1)["verdict"] == f"{NOISE} (one seed)"


def test_summary_over_factors(tmp_path):
    from lora_diffusion.report_grid import main as summary_main

    rep = {"results": {"sst2/trajectory": {
        "k=1": {"default": True, "summary": {"n": 3, "mean": 72.5, "sd": 1.25}, "verdict": "reference"},
        "k=2": {"default": False, "summary": {"n": 3, "mean": 74.0, "sd": 0.5}, "difference": 1.5,
                "p_bonferroni": 0.0123, "verdict": "better"}}}}
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "grid_report.json").write_text(json.dumps(rep))
    assert summary_main([str(tmp_path / "summary.md"), str(tmp_path / "modules"), str(tmp_path / "ranks")]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "| modules | sst2/trajectory | k=1 **(default)** | 72.50 +- 1.25 (n=3) |  |  | reference |" in text
    assert "| modules | sst2/trajectory | k=2 | 74.00 +- 0.50 (n=3) | +1.50 | 0.0123 | better |" in text
    assert "Not measured yet: ranks." in text
    assert summary_main([str(tmp_path / "x.md")]) == 2


def test_summary_cell_of_one_seed_has_no_sd():
    from lora_diffusion.report_grid import summary_table

    rep = {"results": {"sst2/trajectory": {
        "a": {"default": True, "summary": {"n": 2, "mean": 70.0, "sd": 1.0}, "verdict": "reference"},
        "b": {"summary": {"n": 1, "mean": 51.0, "sd": float("nan")}, "difference": -19.0, "verdict": "one seed"}}}}
    rows = summary_table({"encoder": rep})[2:]
    assert "| 70.00 +- 1.00 (n=2) |" in rows[0] and "| 51.00 (n=1) | -19.00 |" in rows[1] and "nan" not in rows[1]


def test_grid_series_orders_points_labels_values_and_draws(tmp_path):
    from lora_diffusion.plots import grid_series, plot_grid
    from lora_diffusion.stats import summarize

    points = [{"slug": "k=1", "overrides": {"k": 1}, "default": True},
              {"slug": "k=2", "overrides": {"k": 2}, "default": False},
              {"slug": "k=4", "overrides": {"k": 4}, "default": False}]
    numbers = {"sst2/trajectory": {
        "k=4": {"scores": {1: 70.0}, "summary": summarize([70.0])},
        "k=1": {"scores": {1: 80.0, 2: 82.0, 3: 84.0}, "summary": summarize([80.0, 82.0, 84.0])}}}
    rows = grid_series(points, numbers)["sst2/trajectory"]
    assert [r["label"] for r in rows] == ["1 (default)", "4"]  # grid order; k=2 never ran
    assert rows[0]["mean"] == 82.0 and rows[0]["n"] == 3
    # t(0.975, 2) = 4.303; sd 2 / sqrt(3): half-width 4.968
    assert abs(rows[0]["high"] - 82.0 - 4.303 * 2 / 3 ** 0.5) < 1e-2 and rows[0]["low"] < 82.0
    assert rows[1]["low"] == rows[1]["high"] == 70.0  # one seed: no interval, not NaN
    path = plot_grid(points, numbers, tmp_path / "g.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reference_tables_pair_every_method_with_full_at_each_point():
    from lora_diffusion.report_grid import reference_tables

    points = [{"slug": "rows=10", "default": False}, {"slug": "rows=0", "default": True},
              {"slug": "rows=5", "default": False}]
    data = {("sst2", "full"): {"rows=10": {1: 80.0, 2: 82.0, 3: 84.0}, "rows=0": {1: 90.0}},
            ("sst2", "trajectory"): {"rows=10": {1: 72.0, 2: 74.0, 3: 75.0}, "rows=5": {1: 60.0}},
            ("sst2", "bitfit"): {"rows=0": {1: 81.0}},
            ("trec", "full"): {"rows=0": {1: 70.0}}}  # trec: the reference alone, no table
    lines, numbers = reference_tables(points, data)
    assert set(numbers) == {"sst2"} and list(numbers["sst2"]) == ["rows=10", "rows=0"]  # rows=5 lacks full
    traj = numbers["sst2"]["rows=10"]["methods"]["trajectory"]
    assert traj["difference"] == pytest.approx(-25 / 3) and traj["paired_seeds"] == 3
    assert traj["share_of_reference"] == pytest.approx(100 * (221 / 3) / 82)
    assert "p_adj" in traj["verdict"]  # three paired seeds: tested
    at_all = numbers["sst2"]["rows=0"]["methods"]  # only the methods that have the point
    assert list(at_all) == ["bitfit"] and at_all["bitfit"]["difference"] == -9.0 and "one seed" in at_all["bitfit"]["verdict"]
    text = "\n".join(lines)
    assert "| full | 82.00 +- 2.00 (100.0%) | 90.00 (100.0%) |" in text  # the matrix, points in grid order
    assert "| trajectory | 73.67 +- 1.53 (89.8%) | - |" in text
    assert "| bitfit | - | 81.00 (90.0%) |" in text and "rows=0 (default)" in text
    assert reference_tables(points, {("sst2", "full"): {"rows=0": {1: 1.0}}}) == ([], {})


def test_training_rows_per_point_is_the_median_over_runs():
    from lora_diffusion.report_grid import training_rows

    costs = {("sst2", "full"): {"a": {"train_rows": [100, 100]}, "b": {"train_rows": [10]}},
             ("sst2", "lora"): {"a": {"train_rows": [100]}, "b": {"train_rows": []}, "c": {}}}
    assert training_rows(costs) == {"a": 100, "b": 10}
