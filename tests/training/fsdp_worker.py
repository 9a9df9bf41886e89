"""One process of the FSDP test (tests/training/test_fsdp.py): the runs of the DDP method
worker (ddp_methods_worker.py: 4 steps straight, and interrupted after step 1 then resumed),
with accelerate's FSDP preparation forced onto CPU + gloo when run under torch.distributed
env vars; ``fsdp_worker.py finetune BASE DATA OUT METHOD``: ``run_finetune`` end to end.
Alone, it is the single-process reference. GRADIENT_CHECKPOINTING=1 / MIXED_PRECISION=bf16
set the train options.

accelerate 1.15 never selects FSDP for a CPU launch (``AcceleratorState`` turns
ACCELERATE_USE_FSDP into DistributedType.FSDP only for accelerator device types, and
``FullyShardedDataParallelPlugin`` with sync_module_states asks for an accelerator device), so
the worker sets the state accelerate has on GPUs: distributed_type FSDP with the plugin of
examples/accelerate/fsdp.yaml (FSDP1, FULL_SHARD, transformer-layer wrap, use_orig_params,
FULL_STATE_DICT; sync_module_states off: with it the plugin asks for an accelerator device). Everything after that is accelerate's own FSDP path (``Accelerator.prepare``
wraps with torch's FullyShardedDataParallel, ``clip_grad_norm_``, ``no_sync``) and the trainer's."""

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def force_fsdp_on_cpu() -> None:
    import accelerate.state as state
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    original = state.AcceleratorState.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU:
            # as AcceleratorState does for FSDP on GPUs: the partial state too, so that a later
            # AcceleratorState() (AcceleratedOptimizer, autocast) keeps this state and plugin
            self.distributed_type = state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            # MULTI_CPU's device is "cpu:0"; FSDP1 wants device_id to equal the parameters' "cpu"
            self.device = state.PartialState._shared_state["device"] = torch.device("cpu")
            self.fsdp_plugin = FullyShardedDataParallelPlugin(
                fsdp_version=1, reshard_after_forward="FULL_SHARD", auto_wrap_policy="transformer_based_wrap",
                use_orig_params=True, state_dict_type="FULL_STATE_DICT", sync_module_states=False,
                cpu_ram_efficient_loading=False)
            if self._mixed_precision != "no":  # what AcceleratorState does for FSDP on GPUs
                self.fsdp_plugin.set_mixed_precision(self._mixed_precision)

    state.AcceleratorState.__init__ = init


def train(name: str, out: Path, batch: int, micro: int, resume: bool):
    from ddp_methods_worker import build, rows

    from lora_diffusion.config import TrainConfig
    from lora_diffusion.data.encoding import pad_collate
    from lora_diffusion.objective import DiffusionObjective
    from lora_diffusion.training.trainer import Trainer, TrainingInterrupted

    cfg = TrainConfig(max_steps=4, lr=1e-2, warmup_steps=1, batch_size=batch, micro_batch_size=micro,
                      save_every=1 if resume else 0, log_every=1, seed=0,
                      gradient_checkpointing=os.environ.get("GRADIENT_CHECKPOINTING") == "1",
                      mixed_precision=os.environ.get("MIXED_PRECISION", "no"))

    def make():
        model = build(name)
        return Trainer(model, DiffusionObjective(model.backbone.diffusion), rows(name), cfg, out, collate=pad_collate,
                       progress=False)

    trainer = make()
    if not resume:
        trainer.fit()
        return trainer
    log = trainer.log

    def interrupt(entry):  # Ctrl-C after step 2's update, before its checkpoint: resumes from step 1
        log(entry)
        if entry.get("step") == 2:
            raise KeyboardInterrupt

    trainer.log = interrupt
    try:
        trainer.fit()
        raise AssertionError("not interrupted")
    except TrainingInterrupted as stop:
        assert stop.step == 1 or stop.step == 2, stop.step
    again = make()
    again.fit(resume=True)
    return again


def after_training_loss(name: str, model) -> float:
    """The trained model used by rank 0 alone after fit (as ``finetune`` saves and evaluates it)."""
    from ddp_methods_worker import rows

    from lora_diffusion.data.encoding import pad_collate
    from lora_diffusion.objective import DiffusionObjective

    model.eval()
    with torch.no_grad():
        loss, _ = DiffusionObjective(model.backbone.diffusion)(model, pad_collate(rows(name)[:4]),
                                                               torch.Generator().manual_seed(7))
    return float(loss)


def main() -> None:
    out, batch, micro, names = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
    for name in names:
        for resume in (False, True):
            target = out / f"{name}-{'resumed' if resume else 'straight'}"
            trainer = train(name, target, batch, micro, resume)
            # after fit the trainer has unsharded the model: rank 0 alone reads whole tensors
            if trainer.accelerator.is_main_process:
                model = trainer.unwrapped
                state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
                save_file(state, str(target / "trained.safetensors"))
                losses = [h["loss"] for h in trainer.history if "loss" in h]
                (target / "losses.json").write_text(json.dumps({
                    "losses": losses, "world": trainer.accelerator.num_processes,
                    "distributed_type": str(trainer.accelerator.distributed_type),
                    "after": after_training_loss(name, model)}))
            trainer.accelerator.wait_for_everyone()


def finetune(base: str, data: str, out: str, method: str) -> None:
    """``run_finetune`` end to end (adapter saved and evaluated by rank 0 after training)."""
    from ddp_methods_worker import OPTIONS

    from lora_diffusion.config import from_dict
    from lora_diffusion.finetune import FinetuneConfig, run_finetune

    cfg = from_dict(FinetuneConfig, {
        "base": base, "method": method, "method_options": OPTIONS.get(method, {}), "data_file": data,
        "validation_rows": 0, "output_dir": out, "eval_file": data,
        "train": {"max_steps": 4, "lr": 1e-2, "warmup_steps": 1, "batch_size": 8, "micro_batch_size": 2,
                  "save_every": 2, "log_every": 1, "seed": 0}})
    run_finetune(cfg, progress=False)


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        force_fsdp_on_cpu()
    if sys.argv[1] == "finetune":
        finetune(*sys.argv[2:6])
    else:
        main()
