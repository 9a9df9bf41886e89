"""Large-base switches on CPU: gradient checkpointing (same losses and weights, activations
recomputed), the launch modes the trainer accepts, and the 8B memory estimate's accounting."""

import pytest
import torch

from lora_diffusion.config import ConfigError, TrainConfig
from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.finetune import build_method_model
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import tiny_backbone
from lora_diffusion.training.distributed import check_launch_mode
from lora_diffusion.training.trainer import Trainer

TEXTS = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]


def _train(tmp_path, tokenizer, method, checkpointing, arch="bert"):
    base = tiny_backbone(arch, seed=0)
    for m in base.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model, _ = build_method_model(base, method, {"rank": 4, "alpha": 8.0} if method == "lora" else None, seed=0)
    layer_calls = []
    layer = next(m for n, m in base.mlm.named_modules() if n.endswith("layer.0") or n.endswith("layers.0"))
    inner = next(m for m in layer.modules() if isinstance(m, torch.nn.Linear))  # hooks inside the checkpoint
    inner.register_forward_hook(lambda *_: layer_calls.append(1))
    rows = encode_examples([(TEXTS[i % 8], i % 2) for i in range(8)], SST2, tokenizer)
    cfg = TrainConfig(max_steps=2, lr=1e-3, warmup_steps=1, batch_size=4, micro_batch_size=2, save_every=0,
                      log_every=1, seed=0, gradient_checkpointing=checkpointing)
    trainer = Trainer(model, DiffusionObjective(base.diffusion), rows, cfg, tmp_path / f"{method}-{checkpointing}",
                      collate=pad_collate, progress=False)
    trainer.fit()
    state = {n: p.detach().clone() for n, p in trainer.unwrapped.named_parameters() if p.requires_grad}
    return [h["loss"] for h in trainer.history], state, len(layer_calls)


@pytest.mark.parametrize("method, arch", [("full", "bert"), ("lora", "llama")])
def test_gradient_checkpointing_same_losses_and_weights(method, arch, tmp_path, tokenizer):
    plain_loss, plain_w, plain_calls = _train(tmp_path, tokenizer, method, False, arch)
    ckpt_loss, ckpt_w, ckpt_calls = _train(tmp_path, tokenizer, method, True, arch)
    assert ckpt_loss == pytest.approx(plain_loss, rel=1e-6)
    assert max((plain_w[k] - ckpt_w[k]).abs().max().item() for k in plain_w) < 1e-6
    assert ckpt_calls == 2 * plain_calls  # each layer ran again in the backward pass


def test_gradient_checkpointing_refused_where_unsupported(tmp_path, tokenizer):
    from lora_diffusion.hub import load_base
    from lora_diffusion.testing_remote import write_tiny_llada

    base = load_base(str(write_tiny_llada(tmp_path / "llada")))
    model, _ = build_method_model(base, "full", None, seed=0)
    rows = encode_examples([("a fine film", 1), ("dull", 0)], SST2, tokenizer)
    cfg = TrainConfig(max_steps=1, batch_size=2, micro_batch_size=2, save_every=0, gradient_checkpointing=True)
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        Trainer(model, DiffusionObjective(base.diffusion), rows, cfg, tmp_path / "out", collate=pad_collate)


@pytest.mark.parametrize("mode", ["DistributedType.DEEPSPEED"])  # FSDP v1: accepted (test_fsdp.py)
def test_sharded_launch_modes_are_refused_in_one_line(mode):
    with pytest.raises(ConfigError, match="DDP") as err:
        check_launch_mode(mode)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mode", ["DistributedType.NO", "DistributedType.MULTI_CPU", "DistributedType.MULTI_GPU"])
def test_ddp_and_single_process_are_accepted(mode):
    check_launch_mode(mode)


def test_8b_estimate_counts_every_method_on_the_real_layout():
    from lora_diffusion.scale import LLADA_8B, memory_per_gpu, method_parameters, table

    counts = method_parameters()
    d, f, layers, v = LLADA_8B.hidden, LLADA_8B.ffn, LLADA_8B.layers, LLADA_8B.vocab
    assert counts["full"]["total"] == layers * (4 * d * d + 3 * d * f + 2 * d) + 2 * v * d + d
    assert counts["lora"]["trainable"] == layers * 64 * (4 * 2 * d + 2 * (d + f) + (f + d))  # r = 64
    assert counts["adapter"]["trainable"] == layers * 2 * (2 * d * 256 + 256 + d)
    assert 5e6 < counts["trajectory"]["trainable"] < 2e7
    full_ddp = memory_per_gpu(counts["full"]["total"], counts["full"]["trainable"], LLADA_8B, sharding="ddp")
    assert full_ddp["weights"] + full_ddp["gradients"] + full_ddp["adam"] == pytest.approx(
        16 * counts["full"]["total"] / 2**30)
    assert "| trajectory |" in table()


@pytest.mark.parametrize("arch, method", [("llama", "lora"), ("eurobert", "trajectory"), ("gpt2", "adapter")])
def test_bf16_autocast_trains_new_families_on_cpu(arch, method, tmp_path, tokenizer):
    base = tiny_backbone(arch, seed=0)
    opts = {"lora": {"rank": 4, "alpha": 8.0}, "adapter": {"bottleneck": 8},
            "trajectory": {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}}[method]
    model, _ = build_method_model(base, method, opts, seed=0)
    rows = encode_examples([(TEXTS[i % 8], i % 2) for i in range(8)], SST2, tokenizer)
    cfg = TrainConfig(max_steps=2, lr=1e-3, warmup_steps=1, batch_size=4, micro_batch_size=2, save_every=0,
                      log_every=1, seed=0, mixed_precision="bf16")
    trainer = Trainer(model, DiffusionObjective(base.diffusion), rows, cfg, tmp_path / "bf16", collate=pad_collate,
                      progress=False)
    trainer.fit()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.history)
