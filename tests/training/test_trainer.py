import json

import pytest
import torch
from safetensors.torch import load_file

from lora_diffusion.config import PretrainConfig, TrainConfig
from lora_diffusion.demo import resource
from lora_diffusion.hub import save_base
from lora_diffusion.pretrain import run_pretrain
from lora_diffusion.testing import tiny_backbone
from lora_diffusion.training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from lora_diffusion.training.schedule import batch_indices, lr_factor
from lora_diffusion.training.trainer import Trainer, TrainingDiverged

# Losses of the first 4 steps of `_tiny_pretrain` (seed 0), recorded on the CPU build of
# torch 2.13.0. A change of the objective, masking, data order or optimiser moves them.
RECORDED_LOSSES = [10.350831985473633, 10.326383590698242, 10.277373313903809, 10.291916370391846]


def _tiny_cfg(tmp_path, steps=4, **train):
    base = tmp_path / "tinybase"
    if not base.exists():
        save_base(tiny_backbone("bert", seed=0), base)
    kw = dict(max_steps=steps, lr=1e-3, warmup_steps=1, batch_size=4, micro_batch_size=2, save_every=2,
              log_every=1, eval_every=0, seed=0)
    kw.update(train)
    return PretrainConfig(base=str(base), corpus=str(resource("wikitext2_train_head.txt.gz")),
                          output_dir=str(tmp_path / "run"), seq_len=32, max_train_chunks=32, eval_chunks=4,
                          train=TrainConfig(**kw))


def _losses(out):
    hist = json.loads((out / "training_history.json").read_text())
    return [h["loss"] for h in hist if "loss" in h]


def test_expected_loss_regression(tmp_path):
    cfg = _tiny_cfg(tmp_path)
    run_pretrain(cfg, progress=False)
    assert _losses(tmp_path / "run") == pytest.approx(RECORDED_LOSSES, rel=1e-4)
    summary = json.loads((tmp_path / "run" / "pretrain_summary.json").read_text())
    assert summary["steps"] == 4 and summary["seed"] == 0 and "versions" in summary
    assert (tmp_path / "run" / "model" / "pretrain_summary.json").is_file()


def test_resume_is_bit_identical(tmp_path):
    full_dir, part_dir = tmp_path / "a", tmp_path / "b"
    full_dir.mkdir(), part_dir.mkdir()
    run_pretrain(_tiny_cfg(full_dir), progress=False)
    cfg = _tiny_cfg(part_dir)
    _run_partial(cfg, upto=3)  # killed during step 4, after the step-2 checkpoint
    run_pretrain(cfg, resume=True, progress=False)
    a = load_file(str(full_dir / "run" / "model" / "model.safetensors"))
    b = load_file(str(part_dir / "run" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(full_dir / "run") == _losses(part_dir / "run")


def _run_partial(cfg, upto):
    """Run the 4-step job but stop (as if killed) right after step ``upto``."""
    import lora_diffusion.training.trainer as tr

    original = tr.Trainer._train_step

    def step(self):
        if self.step >= upto:
            raise KeyboardInterrupt
        return original(self)

    tr.Trainer._train_step = step
    try:
        with pytest.raises(KeyboardInterrupt):
            run_pretrain(cfg, progress=False)
    finally:
        tr.Trainer._train_step = original


def test_refuses_to_overwrite_without_resume_and_refuses_other_run(tmp_path):
    cfg = _tiny_cfg(tmp_path)
    run_pretrain(cfg, progress=False)
    saved = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="finished run .*--overwrite"):
        run_pretrain(cfg, progress=False)
    other = _tiny_cfg(tmp_path)
    other.base = "minilm"
    with pytest.raises(FileExistsError, match="another configuration.*base"):  # the recorded config differs
        run_pretrain(other, resume=True, progress=False)
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == saved
    with pytest.raises(CheckpointError, match="base"):  # a checkpoint refuses another base
        load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1], tiny_backbone("bert"),
                        *_opt_sched(tiny_backbone("bert")), {"job": "pretrain", "base": "minilm"})


def _opt_sched(model):
    opt = torch.optim.AdamW(model.parameters())
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def test_corrupt_checkpoint_names_the_path(tmp_path):
    cfg = _tiny_cfg(tmp_path)
    run_pretrain(cfg, progress=False)
    newest = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    (tmp_path / "run" / "pretrain_summary.json").unlink()  # as if interrupted after its last checkpoint
    (newest / "optimizer.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=str(newest)):
        run_pretrain(cfg, resume=True, progress=False)


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path):
    model = tiny_backbone("bert")
    data = [{"input_ids": torch.tensor([101, 2000, 102]), "attention_mask": torch.ones(3, dtype=torch.long),
             "generate_mask": torch.tensor([False, True, False])}] * 4
    calls = {"n": 0}

    def objective(m, batch, gen):
        calls["n"] += 1
        loss = m(batch["input_ids"], batch["attention_mask"], select=batch["generate_mask"]).float().mean()
        return (loss * float("nan") if calls["n"] > 2 else loss), {}

    cfg = TrainConfig(max_steps=5, batch_size=2, micro_batch_size=2, save_every=1, warmup_steps=0, log_every=1)
    trainer = Trainer(model, objective, data, cfg, tmp_path, progress=False)
    with pytest.raises(TrainingDiverged, match="non-finite loss.*step 3.*step-0000002"):
        trainer.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-0000001", "step-0000002"]


def test_lr_schedule_warmup_cosine_floor_never_rises():
    f = [lr_factor(s, 10, 100, 0.1) for s in range(150)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert f[100] == pytest.approx(0.1) and all(x == pytest.approx(0.1) for x in f[100:])
    assert all(a >= b - 1e-12 for a, b in zip(f[10:], f[11:]))


def test_batch_indices_cover_each_epoch_and_depend_on_seed():
    idx = torch.cat([batch_indices(s, 4, 10, seed=0) for s in range(5)])
    assert sorted(idx[:10].tolist()) == list(range(10)) and sorted(idx[10:20].tolist()) == list(range(10))
    assert torch.equal(batch_indices(3, 4, 10, 0), batch_indices(3, 4, 10, 0))
    assert not torch.equal(batch_indices(0, 4, 10, 0), batch_indices(0, 4, 10, 1))


def test_tensorboard_logs_or_clear_error(tmp_path):
    cfg = _tiny_cfg(tmp_path, steps=2, tensorboard=True)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="lora-diffusion\\[tensorboard\\]"):
            run_pretrain(cfg, progress=False)
        return
    run_pretrain(cfg, progress=False)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
