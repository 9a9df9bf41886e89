"""Bad inputs to ``finetune``: finished and interrupted runs, --resume / --overwrite, output
directories, non-finite values, batch sizes and users' / task files (issue 11, failures 2-7, 9)."""

import json
import shutil
from pathlib import Path

from .conftest import finetune_args


def test_rerun_into_finished_run_without_checkpoints_is_refused(cli, world):  # failure 2
    run = world.run("nockpt")
    cli.refused(finetune_args(world, run), str(run), "finished run", "result.json", "--overwrite")


def test_rerun_into_finished_run_with_checkpoints_is_refused(cli, world):
    cli.refused(finetune_args(world, world.run("trajectory")), "finished run", "--overwrite")


def test_overwrite_replaces_a_finished_run(cli, world, tmp_path):
    run = world.copy("nockpt", tmp_path)
    stale = run / "predictions_old.jsonl"
    stale.write_text("{}\n")
    before = json.loads((run / "result.json").read_text())
    rc, _, err = cli.run(finetune_args(world, run, "trajectory", "--overwrite", "--seed", "7"), own=run)
    assert rc == 0, err
    after = json.loads((run / "result.json").read_text())
    assert after["config"]["train"]["seed"] == 7 != before["config"]["train"]["seed"] and not stale.exists()


def test_resume_of_finished_run_with_other_seed_and_lr_is_refused(cli, world):  # failure 3
    run = world.run("trajectory")
    cli.refused(finetune_args(world, run, "trajectory", "--resume", "--seed", "5", "--lr", "3e-3"),
                "another configuration", "train.lr", "train.seed")


def test_resume_of_finished_run_rewrites_nothing(cli, world):
    run = world.run("trajectory")
    rc, out, err = cli.run(finetune_args(world, run, "trajectory", "--resume"))  # own=None: nothing may change
    assert rc == 0 and "finished run" in err and json.loads(out)["output_dir"] == str(run)


def test_resume_without_checkpoint_says_so_and_stops(cli, world, tmp_path):  # failure 4
    cli.refused(finetune_args(world, tmp_path / "new", "trajectory", "--resume"), "nothing to resume",
                str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_resume_of_interrupted_run_with_changed_config_is_refused(cli, world, tmp_path):
    run = world.copy("trajectory", tmp_path)
    for name in ("result.json", "adapter"):  # as if killed after its checkpoint
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    cli.refused(finetune_args(world, run, "trajectory", "--resume", "--set", "train.weight_decay=0.5"),
                "train.weight_decay", "step-0000001/state.json", own=None)
    rc, _, err = cli.run(finetune_args(world, run, "trajectory", "--resume", "--set", "train.log_every=1"), own=run)
    assert rc == 0 and (run / "result.json").is_file(), err  # log_every does not change results


def test_interrupted_run_is_refused_without_resume(cli, world, tmp_path):
    run = world.copy("trajectory", tmp_path)
    (run / "result.json").unlink()
    shutil.rmtree(run / "adapter")
    cli.refused(finetune_args(world, run), "checkpoints", "--resume", "--overwrite")


def test_resume_and_overwrite_together_are_refused(cli, world, tmp_path):
    cli.refused(finetune_args(world, tmp_path / "r", "trajectory", "--resume", "--overwrite"), "--resume",
                "--overwrite")


def test_output_dir_under_a_file_fails_before_any_work(cli, world, tmp_path):  # failure 5
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cli.refused(finetune_args(world, blocker / "run"), "output_dir", str(blocker / "run"), "is a file")


def test_output_dir_that_is_a_file_is_refused(cli, world, tmp_path):
    target = tmp_path / "out"
    target.write_text("x")
    cli.refused(finetune_args(world, target), "output_dir", "not a directory")


def test_impossible_output_dir_is_refused(cli, world):
    cli.refused(finetune_args(world, "/proc/no/such/run"), "output_dir", "/proc/no/such/run")


def test_infinite_learning_rate_is_refused_at_load(cli, world, tmp_path):  # failure 6
    cli.refused(finetune_args(world, tmp_path / "r", "trajectory", "--set", "train.lr=.inf"), "train.lr", "finite")
    assert not (tmp_path / "r").exists()


def test_nan_from_a_flag_is_refused_at_load(cli, world, tmp_path):
    cli.refused(finetune_args(world, tmp_path / "r", "trajectory", "--lr", "nan"), "train.lr", "finite")


def test_non_finite_method_option_is_refused_at_load(cli, world, tmp_path):
    cli.refused(finetune_args(world, tmp_path / "r", "trajectory", "--set", "method_options.sigmas=[1, .nan, 1]"),
                "method_options", "finite")


def test_out_of_range_learning_rate_is_refused_at_load(cli, world, tmp_path):
    cli.refused(finetune_args(world, tmp_path / "r", "trajectory", "--lr", "1e300"), "train.lr", "<= 1")


def test_non_finite_gradient_stops_keeping_the_last_good_checkpoint(cli, world, tmp_path, monkeypatch):
    import torch

    import lora_diffusion.finetune as ft

    calls = {"n": 0}

    class NanGradient(ft.DiffusionObjective):  # a finite loss whose gradient is NaN from step 2 on
        def __call__(self, model, batch, gen):
            loss, extra = super().__call__(model, batch, gen)
            calls["n"] += 1
            if calls["n"] > 1:
                p = next(q for q in model.parameters() if q.requires_grad)
                loss = loss + torch.sqrt((p - p.detach()).abs().sum())
            return loss, extra

    monkeypatch.setattr(ft, "DiffusionObjective", NanGradient)
    out = tmp_path / "r"
    cli.refused(finetune_args(world, out, "trajectory", "--steps", "2"), "non-finite gradient", "step 2",
                "Last good checkpoint", "step-0000001", own=out)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-0000001"]
    assert not (out / "adapter").exists() and not (out / "result.json").exists()


def test_batch_larger_than_the_data_is_refused(cli, world, tmp_path):  # failure 9
    cli.refused(finetune_args(world, tmp_path / "r", "trajectory", "--set", "train.batch_size=16",
                              "--set", "train.micro_batch_size=16"), "train.batch_size 16", "8 training rows")
    assert not (tmp_path / "r").exists()


def test_non_utf8_data_file_names_file_and_line(cli, world, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(world.train.read_bytes() + b'{"prompt": "caf\xe9 means:", "response": "x"}\n')
    args = finetune_args(world, tmp_path / "r")
    args[args.index("--data-file") + 1] = str(bad)
    cli.refused(args, f"{bad}:9", "not valid utf-8", "0xe9")


def test_bad_json_row_names_file_and_line(cli, world, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(world.train.read_text() + '{"prompt": "x",\n')
    args = finetune_args(world, tmp_path / "r")
    args[args.index("--data-file") + 1] = str(bad)
    cli.refused(args, f"{bad}:9", "invalid JSON")


def test_missing_response_field_names_file_line_and_field(cli, world, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(world.train.read_text() + '{"prompt": "x"}\n')
    args = finetune_args(world, tmp_path / "r")
    args[args.index("--data-file") + 1] = str(bad)
    cli.refused(args, f"{bad}:9", "field 'response'", "missing")


def test_headerless_csv_names_line_one(cli, world, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("word apple means:,apple red\nword river means:,river blue\n")
    args = finetune_args(world, tmp_path / "r")
    args[args.index("--data-file") + 1] = str(bad)
    args[args.index("--eval-file") + 1] = str(bad)
    cli.refused(args, f"{bad}:1", "header row")


def _task_args(world, out, data_dir):
    return ["finetune", "--method", "bitfit", "--task", "sst2", "--base", str(world.base), "--data-dir", str(data_dir),
            "--output-dir", str(out), "--quiet", "--steps", "1", "--set", "train.batch_size=4",
            "--set", "train.micro_batch_size=4"]


def test_non_utf8_task_tsv_names_file_and_line(cli, world, tmp_path):  # failure 7
    data = copy_dir(world.sst2, tmp_path / "sst2")
    (data / "train.tsv").write_bytes((data / "train.tsv").read_bytes() + b"un film tr\xe8s beau\t1\n")
    cli.refused(_task_args(world, tmp_path / "r", data), f"{data / 'train.tsv'}:14", "UTF-8", "0xe8")


def test_binary_task_tsv_names_file_and_line(cli, world, tmp_path):
    data = copy_dir(world.sst2, tmp_path / "sst2")
    (data / "dev.tsv").write_bytes(b"sentence\tlabel\n\x00\x01\x02\t1\n")
    cli.refused(_task_args(world, tmp_path / "r", data), f"{data / 'dev.tsv'}:2", "binary")


def test_headerless_task_tsv_is_detected_not_guessed(cli, world, tmp_path):  # failure 9
    data = copy_dir(world.sst2, tmp_path / "sst2")
    lines = (data / "train.tsv").read_text().splitlines()
    (data / "train.tsv").write_text("\n".join(lines[1:]) + "\n")
    cli.refused(_task_args(world, tmp_path / "r", data), f"{data / 'train.tsv'}:1", "expected header", "data row")


def test_missing_task_file_is_named(cli, world, tmp_path):
    cli.refused(_task_args(world, tmp_path / "r", tmp_path / "nowhere"), "data file not found",
                str(tmp_path / "nowhere" / "train.tsv"))


def test_unknown_method_and_task_name_the_field(cli, world, tmp_path):
    cli.refused(finetune_args(world, tmp_path / "r") + ["--method", "dora"], "method", "dora")
    cli.refused(["finetune", "--task", "imdb", "--output-dir", str(tmp_path / "r")], "task", "imdb")


def test_missing_base_is_one_line(cli, world, tmp_path):
    args = finetune_args(world, tmp_path / "r")
    args[args.index("--base") + 1] = str(tmp_path / "nobase")
    cli.refused(args, "nobase")


def copy_dir(src: Path, dest: Path) -> Path:
    return Path(shutil.copytree(src, dest))
