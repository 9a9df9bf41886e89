"""FSDP (version 1, FULL_SHARD, use_orig_params, FULL_STATE_DICT, as in
examples/accelerate/fsdp.yaml) with 2 CPU processes over gloo against the single-process run
at the same global batch: losses and trained tensors for an uninterrupted run and for one
interrupted after step 1 and resumed from its checkpoint (trained tensors and AdamW state
gathered whole for rank 0 to write, read back into the shards by every rank), and the model
after training (unsharded: rank 0 alone uses it, as ``finetune`` does to save the adapter
and evaluate).

Fast: ``run_finetune`` end to end (trajectory), and full fine-tuning (every tensor sharded and trained), the trajectory method (frozen
trunk sharded, adapter replicated; phase banks without a row in some micro-batches) and BitFit
(trained biases inside frozen, sharded layers: mixed requires_grad in one FSDP unit).
Slow: every method and the multi-task model, gradient checkpointing, bf16.

accelerate 1.15 does not start FSDP on CPU, so ``fsdp_worker.py`` sets the accelerator state
it has on GPUs; accelerate's FSDP preparation and the trainer run unchanged from there."""

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lora_diffusion.config import ConfigError
from lora_diffusion.training.distributed import (
    ObjectiveModule,
    check_launch_mode,
    replicated_modules,
)
from tests.training.launch import check_finetune_end_to_end, compare_runs, load_run, run_workers

WORKER = Path(__file__).with_name("fsdp_worker.py")
FAST = ["full", "trajectory", "bitfit"]
ALL = ["full", "lora", "adapter", "bitfit", "prefix", "trajectory", "trajectory-deep", "trajectory-mix", "multitask"]



def _run(out: Path, world: int, names: list[str], checkpointing: bool = False, precision: str = "no",
         args: list[str] | None = None) -> None:
    run_workers([sys.executable, str(WORKER), *(args or [str(out), "8", "2", ",".join(names)])], world,
                {"GRADIENT_CHECKPOINTING": "1" if checkpointing else "0", "MIXED_PRECISION": precision},
                "FSDP worker")


def _compare(one: Path, two: Path, names: list[str]) -> None:
    compare_runs(one, two, names, "FSDP")
    for name in names:
        a = load_file(str(one / f"{name}-straight" / "trained.safetensors"))
        single_resumed = load_file(str(one / f"{name}-resumed" / "trained.safetensors"))
        assert all(torch.equal(single_resumed[k], a[k]) for k in a), name  # resume is exact in one process


def test_fsdp_equals_one_process(tmp_path):
    _run(tmp_path / "one", 1, FAST)
    _run(tmp_path / "two", 2, FAST)
    _compare(tmp_path / "one", tmp_path / "two", FAST)


def test_finetune_end_to_end_under_fsdp(tmp_path):
    """``run_finetune`` (trajectory): rank 0 saves the adapter and evaluates after training, on
    the model the trainer unsharded; both equal the single-process run."""
    check_finetune_end_to_end(tmp_path, lambda out, world, args: _run(out, world, [], args=args))


@pytest.mark.slow
def test_every_method_and_gradient_checkpointing_under_fsdp(tmp_path):
    _run(tmp_path / "one", 1, ALL)
    _run(tmp_path / "two", 2, ALL)
    _compare(tmp_path / "one", tmp_path / "two", ALL)
    # transformers' non-reentrant checkpointing inside FSDP units: same numbers as without it
    _run(tmp_path / "ckpt", 2, ["full", "lora"], checkpointing=True)
    _compare(tmp_path / "one", tmp_path / "ckpt", ["full", "lora"])


@pytest.mark.slow
def test_bf16_under_fsdp(tmp_path):
    """bf16: FSDP's MixedPrecision (bf16 parameters in the forward, bf16 gradient reduction) for
    the sharded tensors, autocast for the replicated adapter, against one process under autocast:
    equal to bf16 rounding (the distance of either to the fp32 run is of the same size)."""
    names = ["full", "trajectory"]
    _run(tmp_path / "one", 1, names, precision="bf16")
    _run(tmp_path / "two", 2, names, precision="bf16")
    for name in names:
        ref, a = load_run(tmp_path / "one", name, "straight")
        for kind in ("straight", "resumed"):
            got, b = load_run(tmp_path / "two", name, kind)
            assert got["distributed_type"].endswith("FSDP")
            assert got["losses"] == pytest.approx(ref["losses"], rel=2e-3), (name, kind)
            assert max((a[k] - b[k]).abs().max().item() for k in a) < 5e-2, (name, kind)
        assert load_run(tmp_path / "two", name, "resumed")[0]["losses"] == load_run(tmp_path / "two", name, "straight")[0]["losses"]


def test_launch_modes():
    check_launch_mode("DistributedType.FSDP", 1)
    check_launch_mode("DistributedType.FSDP")
    for mode, version in (("DistributedType.FSDP", 2), ("DistributedType.DEEPSPEED", None)):
        with pytest.raises(ConfigError) as err:
            check_launch_mode(mode, version)
        assert "\n" not in str(err.value)


def test_auto_wrap_leaves_out_tied_embeddings():
    """BERT ties its output head to the word embeddings: BertEmbeddings must not be an FSDP unit
    (it would be resharded after the lookup and the head would see a flat shard)."""
    from lora_diffusion.testing import tiny_backbone

    def objective(model, batch, generator):
        return torch.zeros(()), {}

    assert ObjectiveModule(tiny_backbone("bert", seed=0), objective)._no_split_modules == ["BertLayer"]
    assert ObjectiveModule(tiny_backbone("llama", seed=0), objective)._no_split_modules == ["LlamaDecoderLayer"]


def test_replicated_modules():
    """The trained modules kept whole under FSDP: a PEFT adapter, never a module with frozen weights."""
    sys.path.insert(0, str(WORKER.parent))
    from ddp_methods_worker import build

    assert replicated_modules(build("full")) == []
    trajectory = build("trajectory")
    names = {n for n, m in trajectory.named_modules() if any(m is r for r in replicated_modules(trajectory))}
    assert names == {"adapter", "cls_head"}
    for name in ("bitfit", "lora", "trajectory", "multitask"):
        model = build(name)
        kept = replicated_modules(model)
        assert all(p.requires_grad for m in kept for p in m.parameters())
        assert not any(p.requires_grad is False for m in kept for p in m.parameters())
