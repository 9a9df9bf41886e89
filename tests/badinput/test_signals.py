"""Ctrl-C (a real SIGINT to a training subprocess), ``--debug``, internal errors, and a
non-finite parameter stopping the trainer before anything of that step is saved."""

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from lora_diffusion.cli import main
from lora_diffusion.config import ConfigError, TrainConfig
from lora_diffusion.testing import tiny_backbone
from lora_diffusion.training.checkpoint import list_checkpoints
from lora_diffusion.training.trainer import Trainer, TrainingDiverged

from .conftest import finetune_args

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # SIGABRT dumps every thread's stack


def _communicate(proc, timeout):
    """``proc.communicate(timeout)``; past it, SIGABRT (faulthandler prints where the child was
    stuck) and a failure carrying that stack, instead of a bare TimeoutExpired."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=60)
        pytest.fail(f"the child did not exit within {timeout} s of the signal; its stacks:\n{err[-6000:]}")


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A shell starts a background job (``cmd &``) with
    SIGINT ignored, the child inherits that, and Python then installs no KeyboardInterrupt handler:
    a suite run in the background saw the child train on through the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli_process(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "lora_diffusion.cli", *map(str, args)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint, **kw)


def test_ctrl_c_is_one_line_with_step_checkpoint_and_resume_command(world, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    proc = _cli_process(finetune_args(world, out, "trajectory", "--steps", "100000"))
    deadline = time.monotonic() + 180
    while not list_checkpoints(out / "checkpoints"):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = _communicate(proc, 120)
    lines = [line for line in err.splitlines() if line.startswith("lora-diffusion ")]
    assert proc.returncode == 130, err[-3000:]
    assert len(lines) == 1 and "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    line = lines[0]
    assert "interrupted at step" in line and f"last checkpoint: {out / 'checkpoints'}" in line, line
    assert not (out / "result.json").exists() and not (out / "adapter").exists()
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[:2] == ["lora-diffusion", "finetune"] and command[-1] == "--resume"
    # the printed command is accepted (same configuration) and restores the checkpoint it names
    step = int(line.split("interrupted at step ", 1)[1].split(";")[0])
    newest = list_checkpoints(out / "checkpoints")[-1]
    monkeypatch.setattr(Trainer, "_loop", lambda self, bar, times: (_ for _ in ()).throw(KeyboardInterrupt()))
    capsys.readouterr()
    assert main(command[1:]) == 130
    again = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"interrupted at step {int(newest.name.split('-')[1])};" in again and step >= 1, again


def test_debug_shows_the_traceback_before_or_after_the_command(world, tmp_path, capsys):
    args = finetune_args(world, tmp_path / "r", "trajectory", "--set", "train.lr=.inf")
    proc = _cli_process(["--debug", *args])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" in err and "ConfigError: train.lr" in err, err[-2000:]
    with pytest.raises(ConfigError, match="train.lr"):
        main([*args, "--debug"])
    assert main(args) == 2 and "Traceback" not in capsys.readouterr().err


def test_an_internal_error_is_one_line_unless_debug(world, tmp_path, capsys, monkeypatch):
    import lora_diffusion.finetune as ft

    def broken(*a, **k):
        raise TypeError("unexpected")

    monkeypatch.setattr(ft, "load_base", broken)
    assert main(finetune_args(world, tmp_path / "r")) == 1
    err = capsys.readouterr().err
    assert "internal error: TypeError: unexpected" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(TypeError):
        main(["--debug", *finetune_args(world, tmp_path / "r")])


def test_non_finite_parameter_stops_before_saving_that_step(tmp_path):
    model = tiny_backbone("bert")
    data = [{"input_ids": torch.tensor([101, 2000, 102]), "attention_mask": torch.ones(3, dtype=torch.long),
             "generate_mask": torch.tensor([False, True, False])}] * 4

    def objective(m, batch, gen):
        return m(batch["input_ids"], batch["attention_mask"], select=batch["generate_mask"]).float().mean(), {}

    cfg = TrainConfig(max_steps=4, batch_size=2, micro_batch_size=2, save_every=1, warmup_steps=0, log_every=1)
    trainer = Trainer(model, objective, data, cfg, tmp_path, progress=False)
    step = trainer.optimizer.step

    def poisoned(*a, **k):  # the update of step 2 overflows one weight
        step(*a, **k)
        if trainer.step == 1:
            with torch.no_grad():
                next(p for p in trainer.model.parameters() if p.requires_grad).view(-1)[0] = float("inf")

    trainer.optimizer.step = poisoned
    with pytest.raises(TrainingDiverged, match="non-finite values in 1 trained parameter.*step 2.*step-0000001"):
        trainer.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-0000001"]
