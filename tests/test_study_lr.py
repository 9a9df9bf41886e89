"""Learning rates chosen on validation (study_lr.py): every rate of a method's grid trains the
task's first seed, the best validation score wins (first on a tie), its run becomes that seed's
run, and every other seed trains at it; the reported split plays no part."""

import json
from pathlib import Path

import pytest

from lora_diffusion.config import ConfigError, TrainConfig
from lora_diffusion.study import StudyConfig
from lora_diffusion.study_lr import beyond_edge, choose_lr, run_with_lr_search

VALIDATION = {("sst2", 1e-3): 0.70, ("sst2", 3e-3): 0.80, ("sst2", 1e-2): 0.80, ("trec", 1e-3): 0.9,
              ("trec", 3e-3): 0.5, ("trec", 1e-2): None}  # None: diverged


def _fake_run_cell(calls):
    def run_cell(cfg, task, method, seed, progress=True):
        run = cfg.run_config(method, seed, task)
        calls.append((task, method, seed, run.train.lr, run.output_dir))
        value = VALIDATION.get((task, run.train.lr), 0.6) if method == "trajectory" else 0.6
        out = Path(run.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if value is None:  # diverged: recorded as study.run_cell does
            (out / "failed.json").write_text("{}")
            return None
        (out / "result.json").write_text(json.dumps({
            "validation": {"generation": {"primary": "accuracy", "metrics": {"accuracy": value}}},
            "dev": {"metrics": {"accuracy": 1.0 - value}}}))  # the reported split: never read
        (out / "checkpoints").mkdir(exist_ok=True)
        return out / "result.json"
    return run_cell


def test_rates_chosen_on_validation_then_other_seeds_at_them(tmp_path):
    cfg = StudyConfig(tasks=["sst2", "trec"], methods=["full", "trajectory"], seeds=[1, 2, 3],
                      lr_grid={"trajectory": [1e-3, 3e-3, 1e-2]}, method_lr={"full": 5e-5},
                      validation_rows=10, output_dir=str(tmp_path), train=TrainConfig(max_steps=1, warmup_steps=0))
    calls = []
    results = run_with_lr_search(cfg, False, _fake_run_cell(calls))
    search = [c for c in calls if "lr-search" in c[4]]
    assert [(c[0], c[3], c[2]) for c in search] == [("sst2", 1e-3, 1), ("sst2", 3e-3, 1), ("sst2", 1e-2, 1),
                                                     ("trec", 1e-3, 1), ("trec", 3e-3, 1), ("trec", 1e-2, 1)]
    record = json.loads((tmp_path / "lr-search" / "sst2" / "trajectory.json").read_text())
    assert record["chosen_lr"] == 3e-3 and record["validation_primary"] == {"0.001": 0.7, "0.003": 0.8, "0.01": 0.8}
    assert json.loads((tmp_path / "lr-search" / "trec" / "trajectory.json").read_text())["chosen_lr"] == 1e-3
    main = [c for c in calls if "lr-search" not in c[4] and c[1] == "trajectory"]
    assert sorted((c[0], c[2], c[3]) for c in main) == [("sst2", 2, 3e-3), ("sst2", 3, 3e-3),
                                                        ("trec", 2, 1e-3), ("trec", 3, 1e-3)]
    copied = tmp_path / "sst2" / "trajectory" / "seed-1"
    assert (copied / "result.json").is_file() and not (copied / "checkpoints").exists()
    assert json.loads((copied / "selected_from.json").read_text())["chosen_lr"] == 3e-3
    assert all(c[3] == 5e-5 for c in calls if c[1] == "full")  # no grid: the method's own rate
    assert len(results) == 2 * 2 * 3


def test_task_order_runs_each_task_whole_before_the_next(tmp_path):
    """``order: task``: sst2's search, its seed 1 (the chosen rate's copy) and seeds 2-3, then trec's;
    the rates chosen are those of the seed order."""
    cfg = StudyConfig(tasks=["sst2", "trec"], methods=["full", "trajectory"], seeds=[1, 2, 3], order="task",
                      lr_grid={"trajectory": [1e-3, 3e-3, 1e-2]}, method_lr={"full": 5e-5},
                      validation_rows=10, output_dir=str(tmp_path), train=TrainConfig(max_steps=1, warmup_steps=0))
    calls = []
    run_with_lr_search(cfg, False, _fake_run_cell(calls))
    tasks = [c[0] for c in calls]
    assert tasks == ["sst2"] * 8 + ["trec"] * 8  # per task: full x 3 seeds, 3 search runs, trajectory seeds 2-3
    assert [(c[1], c[2], c[3]) for c in calls[:8]] == [
        ("full", 1, 5e-5), ("trajectory", 1, 1e-3), ("trajectory", 1, 3e-3), ("trajectory", 1, 1e-2),
        ("full", 2, 5e-5), ("trajectory", 2, 3e-3), ("full", 3, 5e-5), ("trajectory", 3, 3e-3)]
    assert json.loads((tmp_path / "lr-search" / "trec" / "trajectory.json").read_text())["chosen_lr"] == 1e-3
    with pytest.raises(ConfigError, match="order: must be seed or task"):
        StudyConfig(order="method")


def test_no_rate_is_chosen_while_a_search_run_trains_in_another_worker(tmp_path):
    cfg = StudyConfig(tasks=["sst2"], methods=["trajectory"], seeds=[1, 2], lr_grid={"trajectory": [1e-3, 3e-3]},
                      validation_rows=10, output_dir=str(tmp_path), train=TrainConfig(max_steps=1, warmup_steps=0))
    calls = []
    fake = _fake_run_cell(calls)

    def busy_at_3e3(c, task, method, seed, progress=True):  # None without failed.json: locked elsewhere
        return None if c.run_config(method, seed, task).train.lr == 3e-3 else fake(c, task, method, seed)

    assert run_with_lr_search(cfg, False, busy_at_3e3) == []
    assert not (tmp_path / "lr-search" / "sst2" / "trajectory.json").exists()  # nothing chosen yet
    assert [c[2] for c in calls] == [1, 1]  # asked again at seed 2 (still busy); seed 2 waits for the choice
    assert len(run_with_lr_search(cfg, False, fake)) == 2  # a later pass chooses and goes on
    assert json.loads((tmp_path / "lr-search" / "sst2" / "trajectory.json").read_text())["chosen_lr"] == 3e-3


def test_bad_lr_grids_name_the_field():
    with pytest.raises(ConfigError, match="lr_grid.trajectory"):
        StudyConfig(methods=["trajectory"], lr_grid={"trajectory": [0.0]})
    with pytest.raises(ConfigError, match="lr_grid"):
        StudyConfig(methods=["trajectory"], lr_grid={"trajectory": [1e-3]}, validation_rows=0)
    with pytest.raises(ConfigError, match="method_options"):
        StudyConfig(methods=["trajectory"], lr_grid={"full": [1e-3]})


def test_labelled_variants_are_methods_of_their_own_in_a_study(tmp_path):
    cfg = StudyConfig(tasks=["sst2"], methods=["trajectory", "trajectory@deep"], seeds=[42],
                      method_options={"trajectory@deep": {"preset": "deep"}}, method_lr={"trajectory@deep": 3e-3},
                      lr_grid={"trajectory": [1e-3]}, output_dir=str(tmp_path))
    run = cfg.run_config("trajectory@deep", 42, "sst2")
    assert run.method == "trajectory" and run.method_options == {"preset": "deep"} and run.train.lr == 3e-3
    assert run.output_dir.endswith("sst2/trajectory@deep/seed-42")
    assert cfg.run_config("trajectory", 42, "sst2").method_options == {}
    with pytest.raises(ConfigError, match="methods"):
        StudyConfig(methods=["bogus@x"])
    with pytest.raises(ConfigError, match="methods"):
        StudyConfig(methods=["trajectory", "trajectory"])


def test_search_runs_with_their_own_budget_then_the_first_seed_trains_again(tmp_path):
    cfg = StudyConfig(tasks=["sst2", "trec"], methods=["trajectory"], seeds=[1, 2],
                      lr_grid={"trajectory": [1e-3, 3e-3]}, validation_rows=10, output_dir=str(tmp_path),
                      task_overrides={"sst2": {"train.max_steps": 40}},
                      lr_search_overrides={"sst2": {"train.max_steps": 10, "train.min_steps": 5}},
                      train=TrainConfig(max_steps=20, warmup_steps=0))
    calls, steps = [], {}
    fake = _fake_run_cell(calls)

    def run_cell(c, task, method, seed, progress=True):
        run = c.run_config(method, seed, task)
        steps[run.output_dir] = (run.train.max_steps, run.train.min_steps)
        return fake(c, task, method, seed, progress)

    run_with_lr_search(cfg, False, run_cell)
    search = {d: v for d, v in steps.items() if "lr-search" in d}
    assert {v for d, v in search.items() if "/sst2/" in d} == {(10, 5)}  # the search budget
    assert {v for d, v in search.items() if "/trec/" in d} == {(20, 0)}   # no search overrides
    main = {d: v for d, v in steps.items() if "lr-search" not in d}
    assert main == {str(tmp_path / "sst2/trajectory/seed-1"): (40, 0), str(tmp_path / "sst2/trajectory/seed-2"): (40, 0),
                    str(tmp_path / "trec/trajectory/seed-2"): (20, 0)}  # trec seed 1: the search run, copied
    record = json.loads((tmp_path / "lr-search" / "sst2" / "trajectory.json").read_text())
    assert record["chosen_lr"] == 3e-3 and record["search_overrides"] == {"train.max_steps": 10, "train.min_steps": 5}
    assert (tmp_path / "trec" / "trajectory" / "seed-1" / "selected_from.json").is_file()
    assert not (tmp_path / "sst2" / "trajectory" / "seed-1" / "selected_from.json").exists()


def test_bad_search_overrides_name_the_field():
    with pytest.raises(ConfigError, match="lr_search_overrides"):
        StudyConfig(tasks=["sst2"], methods=["trajectory"], lr_grid={"trajectory": [1e-3]},
                    lr_search_overrides={"sst2": 5})
    with pytest.raises(ConfigError, match="lr_search_overrides"):
        StudyConfig(tasks=["sst2"], methods=["trajectory"], lr_search_overrides={"sst2": {"train.max_steps": 5}})
    with pytest.raises(ConfigError, match="task"):
        StudyConfig(tasks=["sst2"], methods=["trajectory"], lr_grid={"trajectory": [1e-3]},
                    lr_search_overrides={"trec": {"train.max_steps": 5}})
    with pytest.raises(ConfigError, match="max_steps"):
        StudyConfig(tasks=["sst2"], methods=["trajectory"], lr_grid={"trajectory": [1e-3]},
                    lr_search_overrides={"sst2": {"train.max_steps": -1}})


def test_beyond_edge_by_hand():
    assert beyond_edge([2e-5, 5e-5, 1e-4], 1e-4) == 2e-4  # 1e-4 x (1e-4 / 5e-5)
    assert beyond_edge([2e-5, 5e-5, 1e-4], 2e-5) == 8e-6  # 2e-5 x (2e-5 / 5e-5)
    assert beyond_edge([3e-3, 1e-2, 3e-2], 3e-2) == 0.09  # 3e-2 x 3
    assert beyond_edge([2e-5, 5e-5, 1e-4], 5e-5) is None  # inside the grid
    assert beyond_edge([0.3, 0.6], 0.6) is None  # past a learning rate of 1
    assert beyond_edge([1e-3], 1e-3) is None


def test_a_best_rate_at_the_edge_is_extended(tmp_path):
    """Validation rises with the rate up to 1e-2: the grid [1e-3, 3e-3] chooses its edge 3e-3, one
    extension tries 9e-3 (better, still the edge) and stops at the cap; with no extension allowed
    the edge is kept."""
    score = {1e-3: 0.5, 3e-3: 0.6, 9e-3: 0.7, 0.027: 0.65}

    def run_cell(c, task, method, seed, progress=True):
        lr = c.run_config(method, seed, task).train.lr
        out = Path(c.run_config(method, seed, task).output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps({
            "validation": {"generation": {"primary": "accuracy", "metrics": {"accuracy": score[lr]}}}}))
        return out / "result.json"

    def study(extend, out):
        return StudyConfig(tasks=["sst2"], methods=["trajectory"], seeds=[1], lr_grid={"trajectory": [1e-3, 3e-3]},
                           lr_grid_extend=extend, validation_rows=10, output_dir=str(out),
                           train=TrainConfig(max_steps=1, warmup_steps=0))

    assert choose_lr(study(0, tmp_path / "a"), "sst2", "trajectory", False, run_cell) == 3e-3
    assert choose_lr(study(1, tmp_path / "b"), "sst2", "trajectory", False, run_cell) == 9e-3
    record = json.loads((tmp_path / "b" / "lr-search" / "sst2" / "trajectory.json").read_text())
    assert record["grid"] == [1e-3, 3e-3, 9e-3] and record["extended"] == [9e-3]
    assert (tmp_path / "b" / "sst2" / "trajectory" / "seed-1" / "result.json").is_file()  # the chosen run, copied
    assert choose_lr(study(3, tmp_path / "c"), "sst2", "trajectory", False, run_cell) == 9e-3  # 0.027 is worse
    assert json.loads((tmp_path / "c" / "lr-search" / "sst2" / "trajectory.json").read_text())["extended"] == [
        9e-3, 0.027]
    with pytest.raises(ConfigError, match="lr_grid_extend"):
        study(-1, tmp_path / "d")


def test_a_choice_busy_at_the_first_seed_is_made_at_a_later_one(tmp_path):
    """The search run at 3e-3 is still training elsewhere when the worker reaches the method's first
    seed; by its second seed it has finished: the rate is chosen then and seeds 2 and 3 train."""
    cfg = StudyConfig(tasks=["sst2"], methods=["trajectory"], seeds=[1, 2, 3], lr_grid={"trajectory": [1e-3, 3e-3]},
                      validation_rows=10, output_dir=str(tmp_path), train=TrainConfig(max_steps=1, warmup_steps=0))
    calls, asked = [], []
    fake = _fake_run_cell(calls)

    def busy_once(c, task, method, seed, progress=True):
        lr = c.run_config(method, seed, task).train.lr
        asked.append(lr)
        return None if asked.count(3e-3) == 1 and lr == 3e-3 else fake(c, task, method, seed)

    results = run_with_lr_search(cfg, False, busy_once)
    assert json.loads((tmp_path / "lr-search" / "sst2" / "trajectory.json").read_text())["chosen_lr"] == 3e-3
    trained = [(c[2], c[3]) for c in calls if "lr-search" not in c[4]]
    assert trained == [(2, 3e-3), (3, 3e-3)] and len(results) == 2  # seed 1's copy was made at seed 2's turn
    assert (tmp_path / "sst2" / "trajectory" / "seed-1" / "result.json").is_file()
