"""How the trainer hands a model to accelerate: the objective inside the wrapped forward (so DDP
sees every parameter a step uses), the launch modes it supports, gradient checkpointing."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import ConfigError

Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor], torch.Generator], tuple[torch.Tensor, dict[str, float]]]


class ObjectiveModule(torch.nn.Module):
    """The method model with the objective inside its forward: ``forward(batch, generator)`` ->
    (loss, logs). This is what the trainer hands to accelerate (DDP / FSDP / DeepSpeed), so every
    parameter a step touches, regularisers included, is used inside the wrapped forward.

    Why: a trajectory phase bank (or a multi-task adapter) with no row in a micro-batch gets no
    gradient from the denoising loss, while its W_A / W_B still get one from the regularisers,
    computed outside the model's forward. DDP needs ``find_unused_parameters`` for the first and
    forbids the second (a parameter marked unused must not become ready later). With the whole
    objective in the forward, ``find_unused_parameters=True`` is exact: a parameter unused on
    one rank contributes a zero gradient to the average, one unused on every rank keeps
    ``grad=None`` (AdamW skips it), just as in the single-process run, which is unchanged (the
    wrapper only calls the objective; no zero-valued touch alters weight decay or Adam moments)."""

    def __init__(self, model: torch.nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    @property
    def _no_split_modules(self) -> list[str]:
        """The transformer layer classes, for accelerate's FSDP auto-wrap policy."""
        from ..backbone import unwrap_backbone

        return list(getattr(unwrap_backbone(self.model).mlm, "_no_split_modules", None) or [])

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator):
        return self.objective(self.model, batch, generator)


SHARDED_MODES = ("FSDP", "DEEPSPEED")


def check_launch_mode(distributed_type: str) -> None:
    """Single process and DDP (CPU gloo, GPU nccl) are supported and tested. FSDP and DeepSpeed
    shard parameters and optimiser state: checkpoints and adapters would need the gathered
    state (summon_full_params / get_state_dict on every rank) and DeepSpeed its own
    accumulation; that path is not built yet (it needs GPUs to test), so it is refused rather
    than writing shards as if they were whole tensors."""
    kind = distributed_type.rsplit(".", 1)[-1]
    if kind in SHARDED_MODES:
        raise ConfigError(f"launch mode {kind}: the trainer does not yet gather sharded parameters for checkpoints "
                          "and adapters; launch with DDP (examples/accelerate/multi_gpu.yaml, or torchrun) and "
                          "train.gradient_checkpointing=true / train.mixed_precision=bf16 for large bases",
                          field="distributed_type")


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute the trunk's layer activations in the backward pass instead of storing them
    (transformers' own checkpointing, non-reentrant); only matters when gradients flow through
    the trunk (full, LoRA, adapters, BitFit, prefix; the trajectory method never stores them)."""
    from ..backbone import unwrap_backbone

    mlm = unwrap_backbone(model).mlm
    inner = getattr(model, "module", model)
    if getattr(inner, "supports_gradient_checkpointing", True) is False:
        raise ConfigError(f"train.gradient_checkpointing: the {getattr(inner, 'method', 'method')} model as "
                          "configured does not support it (deep trajectory layers)", field="train.gradient_checkpointing")
    if not getattr(mlm, "supports_gradient_checkpointing", False):
        raise ConfigError(f"train.gradient_checkpointing: {type(mlm).__name__} does not support it",
                          field="train.gradient_checkpointing")
    mlm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
