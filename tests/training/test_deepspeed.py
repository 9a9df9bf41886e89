"""DeepSpeed ZeRO stage 2 (as in examples/accelerate/deepspeed_zero2.yaml) with 2 CPU processes
over gloo against the single-process run at the same global batch: losses and trained tensors
for an uninterrupted run and for one interrupted after step 1 and resumed from its checkpoint
(the trained tensors and AdamW state gathered whole from ZeRO's partitions into the files of a
single-process run, read back into the partitions by every rank), and the model after training
(rank 0 alone uses it, as ``finetune`` does to save the adapter and evaluate).

Fast: full fine-tuning (every tensor trained, a head without a row on one rank) and the
trajectory method (phase banks without a row in a whole global batch: AdamW skips them in one
process), checkpoints in the single-process layout, ``run_finetune`` end to end (trajectory).
Slow: every method and the multi-task model, gradient checkpointing, bf16.

Skipped without deepspeed (``pip install 'lora-diffusion[deepspeed]'``). accelerate 1.15 does
not start DeepSpeed on CPU, so ``deepspeed_worker.py`` sets the accelerator state it has on
GPUs; accelerate's DeepSpeed preparation and the trainer run unchanged from there."""

import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lora_diffusion.config import ConfigError
from lora_diffusion.training.distributed import check_launch_mode
from tests.training.launch import check_finetune_end_to_end, compare_runs, load_run, run_workers

pytest.importorskip("deepspeed")

WORKER = Path(__file__).with_name("deepspeed_worker.py")
FAST = ["full", "trajectory"]
ALL = ["full", "lora", "adapter", "bitfit", "prefix", "trajectory", "trajectory-deep", "trajectory-mix", "multitask"]



def _run(out: Path, world: int, names: list[str], args: list[str] | None = None, precision: str = "no",
         checkpointing: bool = False) -> None:
    run_workers([sys.executable, str(WORKER), *(args or [str(out), "8", "2", ",".join(names)])], world,
                {"GRADIENT_CHECKPOINTING": "1" if checkpointing else "0", "MIXED_PRECISION": precision,
                 "ZERO_STAGE": "2"}, "DeepSpeed worker")


def _compare(one: Path, two: Path, names: list[str]) -> None:
    compare_runs(one, two, names, "DEEPSPEED")
    for name in names:
        # the checkpoints are the files of a single-process run: same tensors, same AdamW state
        for step in ("step-0000003", "step-0000004"):  # the two kept
            for file in ("trainable", "optimizer"):
                x, y = (load_file(str(root / f"{name}-resumed" / "checkpoints" / step / f"{file}.safetensors"))
                        for root in (one, two))
                assert sorted(x) == sorted(y), (name, step, file)
                tol = 1e-4 if name == "full" else 1e-5
                assert all((x[k] - y[k]).abs().max().item() <= tol * max(1.0, x[k].abs().max().item())
                           for k in x), (name, step, file)


def test_deepspeed_zero2_equals_one_process(tmp_path):
    _run(tmp_path / "one", 1, FAST)
    _run(tmp_path / "two", 2, FAST)
    _compare(tmp_path / "one", tmp_path / "two", FAST)


def test_finetune_end_to_end_under_deepspeed(tmp_path):
    """``run_finetune`` (trajectory): rank 0 saves the adapter and evaluates after training;
    both equal the single-process run."""
    check_finetune_end_to_end(tmp_path, lambda out, world, args: _run(out, world, [], args=args))


@pytest.mark.slow
def test_every_method_and_gradient_checkpointing_under_deepspeed(tmp_path):
    _run(tmp_path / "one", 1, ALL)
    _run(tmp_path / "two", 2, ALL)
    _compare(tmp_path / "one", tmp_path / "two", ALL)
    # transformers' non-reentrant checkpointing: same numbers as without it
    _run(tmp_path / "ckpt", 2, ["full", "lora"], checkpointing=True)
    _compare(tmp_path / "one", tmp_path / "ckpt", ["full", "lora"])


@pytest.mark.slow
def test_bf16_under_deepspeed(tmp_path):
    """bf16: DeepSpeed's own bf16 (the module cast to bf16, fp32 master weights and AdamW state in
    the partitions) against one process under autocast: equal to bf16 rounding, as under FSDP."""
    names = ["full", "trajectory"]
    _run(tmp_path / "one", 1, names, precision="bf16")
    _run(tmp_path / "two", 2, names, precision="bf16")
    for name in names:
        ref, a = load_run(tmp_path / "one", name, "straight")
        for kind in ("straight", "resumed"):
            got, b = load_run(tmp_path / "two", name, kind)
            assert got["distributed_type"].endswith("DEEPSPEED")
            assert got["losses"] == pytest.approx(ref["losses"], rel=2e-3), (name, kind)
            assert max((a[k] - b[k].float()).abs().max().item() for k in a) < 5e-2, (name, kind)
        assert load_run(tmp_path / "two", name, "resumed")[0]["losses"] == load_run(tmp_path / "two", name, "straight")[0]["losses"]


def test_zero_stages():
    check_launch_mode("DistributedType.DEEPSPEED", None, 2)
    for stage in (None, 0, 1, 3):
        with pytest.raises(ConfigError) as err:
            check_launch_mode("DistributedType.DEEPSPEED", None, stage)
        assert "\n" not in str(err.value) and "zero_stage" in str(err.value)
