import json

from lora_diffusion.cli import main
from lora_diffusion.demo import resource
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone


def _setup(tmp_path):
    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    data = tmp_path / "sst2"
    data.mkdir()
    lines = resource("sst2_train_sample.tsv").read_text().splitlines()
    (data / "train.tsv").write_text("\n".join(lines[:41]) + "\n")
    (data / "dev.tsv").write_text("\n".join(lines[:1] + lines[41:53]) + "\n")
    return data


def test_tiny_study_is_idempotent_and_reports(tmp_path, capsys):
    data = _setup(tmp_path)
    args = ["study", "--base", str(tmp_path / "base"), "--data-dir", str(data), "--methods", "full,bitfit",
            "--seeds", "1,2,3", "--num-seeds", "3", "--steps", "2", "--output-dir", str(tmp_path / "study"), "--quiet",
            "--set", "train.batch_size=8", "--set", "train.micro_batch_size=8", "--set", "validation_rows=8",
            "--set", "train.save_every=1", "--set", "method_lr.bitfit=1e-2"]
    assert main(args) == 0
    done = sorted((tmp_path / "study").glob("*/seed-*/result.json"))
    assert len(done) == 6
    stamps = [p.stat().st_mtime_ns for p in done]
    assert main(args) == 0  # second run: everything skipped
    assert [p.stat().st_mtime_ns for p in done] == stamps
    bitfit = json.loads((tmp_path / "study" / "bitfit" / "seed-2" / "result.json").read_text())
    assert bitfit["config"]["train"]["lr"] == 1e-2 and bitfit["config"]["train"]["seed"] == 2
    assert main(["report", "--study", str(tmp_path / "study"), "--output", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| full | 3 |" in report and "| bitfit | 3 |" in report and "Bonferroni over 1 comparisons" in report
    assert (tmp_path / "rep" / "accuracy_vs_parameters.png").is_file()
    assert (tmp_path / "rep" / "learning_curves.png").is_file()
    assert f"`{bitfit['base_weights']['sha256'][:12]}` (6 runs)." in report  # one base, named by its digest
    # the base rebuilt under the same path with other weights (a new machine): the kept runs are refused
    save_base(tiny_backbone("bert", seed=1), tmp_path / "base")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "result.json: made on base weights" in err and "another output_dir" in err and err.count("\n") == 1
    assert [p.stat().st_mtime_ns for p in done] == stamps


def test_study_rejects_unknown_methods(tmp_path, capsys):
    assert main(["study", "--methods", "full,dora", "--output-dir", str(tmp_path)]) == 2
    assert "methods: unknown ['dora']" in capsys.readouterr().err


def _fixture(root, method, seed, acc, trainable):
    run = root / method / f"seed-{seed}"
    run.mkdir(parents=True)
    result = {
        "config": {"method": method, "train": {"seed": seed}, "output_dir": str(run)},
        "dev": {"accuracy": acc, "head_accuracy": acc - 0.1, "seconds_per_sample": 0.02}, "dev_denoising": {"accuracy": acc / 2}, "train_denoising": {"accuracy": 0.5},
        "summary": {"steps": 10, "mean_time_per_step_s": 0.5, "peak_memory_mb": 100.0,
                    "accounting": {"trainable_parameters": trainable, "percent_of_base": 100.0 * trainable / 1000,
                                   "bytes_on_disk": 4 * trainable}},
    }
    (run / "result.json").write_text(json.dumps(result))


def test_report_from_fixture_results_golden(tmp_path):
    from lora_diffusion.report import collect, tables

    for seed, (a, b) in zip([1, 2, 3, 4, 5], [(0.80, 0.78), (0.82, 0.79), (0.84, 0.80), (0.86, 0.85), (0.88, 0.83)]):
        _fixture(tmp_path, "full", seed, a, 1000)
        _fixture(tmp_path, "trajectory", seed, b, 50)
    text = tables(collect(tmp_path))
    assert "| full | 1,000 | 100.00% | 4,000 |" in text
    assert "| trajectory | 50 | 5.00% | 200 |" in text
    # full: mean 84.0, sd sqrt(0.001)*100 = 3.16, CI 84.0 +- 2.776 * 3.162 / sqrt(5) = [80.1, 87.9]
    assert ("| full | 5 | 84.0 +- 3.2 [80.1, 87.9] | 74.0 +- 3.2 [70.1, 77.9] | 42.0 +- 1.6 [40.0, 44.0] "
            "| 50.0 +- 0.0 [50.0, 50.0] | - |") in text
    assert "| full | 10 | 0.500 | 100 | 20.0 |" in text
    # differences -2, -3, -4, -1, -5 points: mean -3.0; t = -3 / (1.581 / sqrt 5) = -4.24, df 4
    row = next(line for line in text.splitlines() if line.startswith("| trajectory | -3.0"))
    assert "| paired_t | 0.0132 | 0.0132 |" in row
    # d = -3 / sqrt((10 + 8.5) / 2) = -0.99 (pooled SD); d_z = -3 / sqrt(2.5) = -1.90
    assert "| -0.99 | -1.90 |" in row


def test_many_task_study_runs_seed_by_seed_and_reports(tmp_path):
    from lora_diffusion.report_tasks import collect_tasks
    from lora_diffusion.study import StudyConfig

    _setup(tmp_path)  # tmp_path/sst2 and the tiny base
    gsm = tmp_path / "gsm8k"
    gsm.mkdir()
    rows = [{"question": f"what is {i} plus {i}?", "answer": f"{i} + {i} = <<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i}"}
            for i in range(12)]
    (gsm / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    (gsm / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[8:]))
    args = ["study", "--base", str(tmp_path / "base"), "--tasks", "sst2,gsm8k", "--data-root", str(tmp_path),
            "--methods", "full,bitfit", "--seeds", "1", "--steps", "2", "--output-dir", str(tmp_path / "multi"),
            "--quiet", "--set", "train.batch_size=4", "--set", "train.micro_batch_size=4",
            "--set", "task_seeds.sst2=[1,2,3]", "--set", "task_overrides.gsm8k={response.response_budget: 12}",
            "--set", "eval_rows=4", "--set", "validation_rows=0"]
    cfg_plan = StudyConfig(tasks=["sst2", "gsm8k"], methods=["full", "bitfit"], seeds=[1],
                           task_seeds={"sst2": [1, 2, 3]}).plan()
    assert cfg_plan[:4] == [("sst2", "full", 1), ("sst2", "bitfit", 1), ("gsm8k", "full", 1), ("gsm8k", "bitfit", 1)]
    assert len(cfg_plan) == 8 and cfg_plan[-1] == ("sst2", "bitfit", 3)
    assert main(args) == 0
    data = collect_tasks(tmp_path / "multi")
    assert sorted(data) == ["gsm8k", "sst2"] and sorted(data["sst2"]["full"]) == [1, 2, 3]
    g = data["gsm8k"]["full"][1]
    assert g["task"]["response_budget"] == 12 and g["dev"]["primary"] == "exact_match" and g["dev_rows"] == 4
    assert (tmp_path / "multi" / "gsm8k" / "full" / "seed-1" / "predictions_test.jsonl").is_file()
    assert main(["report", "--study", str(tmp_path / "multi"), "--output", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| method | trainable (% of base) | gsm8k (exact_match) | sst2 (accuracy) | mean |" in report
    assert "(n=3)" in report and "### gsm8k" in report and "| sst2 | bitfit |" in report
    assert (tmp_path / "rep" / "tasks_primary_metric.png").is_file()
    bad = ["study", "--tasks", "sst2,imdb", "--output-dir", str(tmp_path / "x")]
    assert main(bad) == 2


def test_task_report_marks_diverged_runs(tmp_path):
    from lora_diffusion.report_tasks import collect_failed, collect_tasks, headline_table

    for method, value in (("full", 40.0), ("prefix", None)):
        run = tmp_path / "squad" / method / "seed-1"
        run.mkdir(parents=True)
        if value is None:
            (run / "failed.json").write_text(json.dumps({"task": "squad", "method": method, "seed": 1,
                                                          "error": "non-finite loss"}))
            continue
        (run / "result.json").write_text(json.dumps({
            "config": {"task": "squad", "method": method, "train": {"seed": 1}},
            "dev": {"primary": "f1", "metrics": {"f1": value, "exact_match": 30.0}},
            "summary": {"accounting": {"trainable_parameters": 10, "percent_of_base": 100.0}}}))
    table = "\n".join(headline_table(collect_tasks(tmp_path), collect_failed(tmp_path)))
    assert "| full | 10 (100.00%) | 40.0 | 40.0 |" in table
    assert "| prefix | - | - (diverged: 1 seed) | - |" in table


def test_one_task_free_text_study_gets_the_task_report(tmp_path):
    from lora_diffusion.report_tasks import is_free_text_study

    for method, seed, value in (("full", 1, 7.0), ("full", 2, 8.0), ("trajectory@deep-all", 1, 6.5)):
        run = tmp_path / "study" / method / f"seed-{seed}"  # the one-task layout: <method>/seed-<n>
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps({
            "config": {"task": "commongen", "method": method.split("@")[0], "train": {"seed": seed}},
            "eval_split": "dev", "dev_rows": 200, "train_rows": 1000, "task": {"response_budget": 24},
            "dev": {"primary": "bleu4", "metrics": {"bleu4": value, "rougeL": 30.0}, "seconds_per_sample": 0.1},
            "summary": {"accounting": {"trainable_parameters": 10, "percent_of_base": 100.0},
                        "mean_time_per_step_s": 0.5}}))
    assert is_free_text_study(tmp_path / "study") and not is_free_text_study(tmp_path)
    assert main(["report", "--study", str(tmp_path / "study"), "--output", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "commongen (bleu4)" in report and "| full | 10 (100.00%) | 7.5 +- 0.7 (n=2) |" in report
    assert "trajectory@deep-all" in report


def test_mean_step_time_skips_runs_that_timed_no_step():
    from lora_diffusion.report_tasks import mean_step_time

    assert mean_step_time([{"mean_time_per_step_s": 1.0}, {"mean_time_per_step_s": None}, {"mean_time_per_step_s": 2.0}]) == "1.500"
    assert mean_step_time([{"mean_time_per_step_s": None}]) == "-"


def test_trainable_cell_gives_the_range_over_tasks_heads():
    from lora_diffusion.report_tasks import trainable_cell

    a = {"trainable_parameters": 1_029_328, "percent_of_base": 4.5256}
    b = {"trainable_parameters": 1_030_868, "percent_of_base": 4.5323}
    assert trainable_cell([b, a]) == "1,029,328 to 1,030,868 (4.53%)"
    assert trainable_cell([a, a]) == "1,029,328 (4.53%)"
    assert trainable_cell([]) == "-"


def test_step_times_are_medians_taken_from_the_logged_steps_for_older_records(tmp_path):
    from lora_diffusion.report_tasks import logged_step_time, mean_step_time

    history = tmp_path / "training_history.json"
    history.write_text(json.dumps([{"step": 1, "time_per_step": 9.0}, {"step": 10, "time_per_step": 2.0},
                                   {"step": 20, "time_per_step": 4.0}, {"step": 30, "time_per_step": 2835.0},
                                   {"step": 30, "eval/accuracy": 0.5}]))
    summary = {"mean_time_per_step_s": None}  # an older run resumed at its last step: nothing timed
    logged_step_time(summary, history)  # the first step (warm-up) left out; a paused step does not count
    assert summary == {"mean_time_per_step_s": 947.0, "median_time_per_step_s": 4.0,
                       "step_time_source": "logged steps"}
    assert mean_step_time([summary, {"mean_time_per_step_s": 1.0}]) == "2.500*"
    older = {"mean_time_per_step_s": 11.6}  # a mean over every step, one of them paused for 47 minutes
    logged_step_time(older, history)
    assert older == {"mean_time_per_step_s": 11.6, "median_time_per_step_s": 4.0, "step_time_source": "logged steps"}
    recorded = {"mean_time_per_step_s": 1.5, "median_time_per_step_s": 1.2}
    logged_step_time(recorded, history)
    assert recorded == {"mean_time_per_step_s": 1.5, "median_time_per_step_s": 1.2}
    assert mean_step_time([recorded]) == "1.200"


def test_subset_flags_narrow_a_config_files_per_method_and_per_task_settings(tmp_path):
    from lora_diffusion.cli.study import narrowed
    from lora_diffusion.config import load_config
    from lora_diffusion.study import StudyConfig

    path = tmp_path / "study.yaml"
    path.write_text("tasks: [sst2, squad]\nmethods: [full, trajectory, trajectory@mix]\n"
                    "method_lr: {full: 5.0e-5, trajectory: 1.0e-3, trajectory@mix: 3.0e-3}\n"
                    "method_options: {trajectory@mix: {preset: mix}}\n"
                    "task_seeds: {sst2: [1, 2]}\ntask_overrides: {squad: {eval_rows: 8}}\n")
    overrides = {"tasks": "squad", "methods": "trajectory@mix"}
    extra = narrowed(str(path), overrides)
    assert extra == {"method_lr": {"trajectory@mix": 3.0e-3}, "method_options": {"trajectory@mix": {"preset": "mix"}},
                     "task_seeds": {}, "task_overrides": {"squad": {"eval_rows": 8}}}
    cfg = load_config(StudyConfig, path, {**overrides, **extra})
    run = cfg.run_config("trajectory@mix", 42, "squad")
    assert run.train.lr == 3.0e-3 and run.method_options == {"preset": "mix"} and run.eval_rows == 8
    # without the subset flags, or with the mapping given by --set, nothing is narrowed
    assert narrowed(str(path), {}) == {} and "method_lr" not in narrowed(str(path), {"methods": "full", "method_lr": {}})
    assert narrowed(None, overrides) == {}


def test_a_cell_training_in_another_worker_is_skipped_untouched(tmp_path, capsys):
    from tests.utils.test_lock import _holder

    data = _setup(tmp_path)
    out = tmp_path / "study"
    args = ["study", "--base", str(tmp_path / "base"), "--data-dir", str(data), "--methods", "full,bitfit",
            "--seeds", "1", "--steps", "1", "--output-dir", str(out), "--quiet",
            "--set", "train.batch_size=8", "--set", "train.micro_batch_size=8", "--set", "validation_rows=0"]
    proc = _holder(out / "full" / ".seed-1.lock")  # another study process is training full / seed 1
    try:
        assert main(args) == 0
    finally:
        proc.kill()
        proc.wait()
    assert "full seed 1 is running in another process, skipped" in capsys.readouterr().out
    assert not (out / "full" / "seed-1").exists() and (out / "bitfit" / "seed-1" / "result.json").is_file()
    assert not (out / "bitfit" / ".seed-1.lock").exists()
    assert main(args) == 0  # the lock is gone: the cell trains now
    assert (out / "full" / "seed-1" / "result.json").is_file()


def test_task_report_names_the_runs_of_a_task_made_on_another_base():
    from lora_diffusion.report_tasks import _bases_note

    one = {"base_weights": {"path": "b", "sha256": "a" * 64}}
    assert _bases_note({"full": {42: one, 43: one}, "lora": {42: one}}) == []  # one base: nothing to say
    note = _bases_note({"full": {42: {}, 43: one}, "lora": {42: {}}})
    assert note[1] == ("**Runs on more than one base** (means over these seeds mix bases): not recorded: full 42, "
                       f"lora 42; `{'a' * 12}`: full 43.")
