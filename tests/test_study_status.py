"""``study --status``: every cell of a study in run order and its state, read from disk without
taking a lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lora_diffusion.cli import main
from lora_diffusion.config import TrainConfig
from lora_diffusion.study import StudyConfig
from lora_diffusion.study_status import cell_state, remaining, status_lines, study_cells


def _cfg(tmp_path):
    return StudyConfig(tasks=["sst2"], methods=["full", "lora"], seeds=[42, 43], lr_grid={"full": [1e-5, 1e-4]},
                       validation_rows=10, output_dir=str(tmp_path / "study"),
                       train=TrainConfig(max_steps=30, warmup_steps=0))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_states_and_order(tmp_path):
    cfg = _cfg(tmp_path)
    cells = study_cells(cfg)
    # the two search runs of full at seed 42 first, then the study seed by seed
    assert [(c.phase, c.method, c.seed) for c in cells] == [
        ("lr=1e-05", "full", 42), ("lr=0.0001", "full", 42),
        ("study", "full", 42), ("study", "lora", 42), ("study", "full", 43), ("study", "lora", 43)]
    assert all(c.state == "pending" and c.max_steps == 30 for c in cells)
    done, running, partial, failed, stale = (c.run_dir for c in cells[:5])
    done.mkdir(parents=True)
    (done / "result.json").write_text("{}")
    (done / "training_history.json").write_text(json.dumps([{"step": 10, "loss": 1.0}, {"step": 20}]))
    running.mkdir(parents=True)
    (running.parent / f".{running.name}.lock").write_text(f"{os.getpid()}\n")  # a live holder
    (partial / "checkpoints" / "step-0000010").mkdir(parents=True)
    (partial / "training_history.json").write_text(json.dumps([{"step": 12}]))
    failed.mkdir(parents=True)
    (failed / "failed.json").write_text("{}")
    stale.mkdir(parents=True)  # a crashed holder's lock file, no checkpoint: it starts over
    (stale.parent / f".{stale.name}.lock").write_text(f"{_dead_pid()}\n")
    states = [(c.state, c.step) for c in study_cells(cfg)]
    assert states == [("done", 20), ("running", None), ("partial", 12), ("failed", None), ("pending", None),
                      ("pending", None)]
    lines = status_lines(study_cells(cfg))
    assert lines[0].split() == ["task", "phase", "cells", "done", "running", "partial", "failed", "pending"]
    assert lines[1].split() == ["sst2", "lr", "search", "2", "1", "1", "0", "0", "0"]
    assert lines[2].split() == ["sst2", "study", "4", "0", "0", "1", "1", "2"]
    assert lines[3].split() == ["all", "6", "1", "1", "1", "1", "2"]
    assert lines[4].startswith("running: sst2 full seed 42 (lr=0.0001), not logged yet")
    assert lines[5].startswith("partial: sst2 full seed 42 (study), step 12 of at most 30")
    assert lines[6].startswith("left: about 0.0 hours of one worker for 0 cells")  # the done run has no wall time
    assert lines[6].endswith("; 3 cells of a kind not run yet are not counted")  # full 42 is a copy: free
    assert not (running.parent / f".{running.name}.lock").read_text() == ""  # read, never taken or removed


def test_an_unreadable_lock_file_is_no_holder(tmp_path):
    run = tmp_path / "m" / "seed-1"
    run.mkdir(parents=True)
    (run.parent / ".seed-1.lock").write_text("")  # a holder between creating and writing it, or debris
    assert cell_state(run) == ("pending", None)


def test_grid_points_and_cli(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    cfg.lr_grid, cfg.grid = {}, {"train.lr": [1e-4, 1e-3]}
    cells = study_cells(cfg)
    assert [c.phase for c in cells[::4]] == ["train.lr=0.0001", "train.lr=0.001"] and len(cells) == 8
    assert str(cells[4].run_dir).endswith("study/train.lr=0.001/sst2/full/seed-42")
    code = main(["study", "--task", "sst2", "--methods", "full", "--seeds", "1", "--output-dir",
                 str(tmp_path / "s"), "--status"])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[-2].split() == ["all", "1", "0", "0", "0", "0", "1"]
    assert out.splitlines()[-1].startswith("left: about 0.0 hours of one worker for 0 cells")
    assert not (tmp_path / "s").exists()  # nothing written


def test_work_left_from_finished_runs_of_the_same_kind(tmp_path):
    """full's two search runs took 100 s and 300 s over 20 and 40 steps (means 200 s, 30 steps): its
    seed-42 cell is a copy (free), seed 43 is halfway (15 of 30 steps: 100 s left); lora has no
    finished run, so its two cells are not counted."""
    cfg = _cfg(tmp_path)
    cells = study_cells(cfg)
    for cell, (secs, steps) in zip(cells[:2], [(100.0, 20), (300.0, 40)]):
        cell.run_dir.mkdir(parents=True)
        (cell.run_dir / "result.json").write_text(json.dumps({"summary": {"wall_time_s": secs}}))
        (cell.run_dir / "training_history.json").write_text(json.dumps([{"step": steps}]))
    half = cfg.run_dir("full", 43, "sst2")
    (half / "checkpoints" / "step-0000015").mkdir(parents=True)
    (half / "training_history.json").write_text(json.dumps([{"step": 15}]))
    cells = study_cells(cfg)
    assert [c.copy for c in cells] == [False, False, True, False, False, False]
    assert remaining(cells) == (100.0, 1, 2)
    assert status_lines(cells)[-1].startswith("left: about 0.0 hours of one worker for 1 cells")


def test_rates_past_the_grid_edge_are_listed(tmp_path):
    """A rate the search added past the edge (recorded, or a run on disk) is a cell of its own."""
    cfg = _cfg(tmp_path)
    search = tmp_path / "study" / "lr-search"
    (search / "lr=0.001" / "sst2" / "full" / "seed-42").mkdir(parents=True)
    assert [c.phase for c in study_cells(cfg)[:3]] == ["lr=1e-05", "lr=0.0001", "lr=0.001"]
    (search / "sst2").mkdir(parents=True)
    (search / "sst2" / "full.json").write_text(json.dumps({"grid": [1e-5, 1e-4, 1e-3, 1e-2]}))
    assert [c.phase for c in study_cells(cfg)[:5]] == ["lr=1e-05", "lr=0.0001", "lr=0.001", "lr=0.01", "study"]
