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
        """The transformer layer classes, for accelerate's FSDP auto-wrap policy. A class holding
        the input embeddings is left out when the output head shares their weight (BERT's
        ``BertEmbeddings``): as a unit of its own it would be resharded after the embedding
        lookup, and the tied head would then see a flat shard ("mat2 must be a matrix")."""
        from ..backbone import unwrap_backbone

        mlm = unwrap_backbone(self.model).mlm
        names = list(getattr(mlm, "_no_split_modules", None) or [])
        emb, out = mlm.get_input_embeddings(), mlm.get_output_embeddings()
        if emb is not None and out is not None and out.weight is emb.weight:
            holders = {type(m).__name__ for m in mlm.modules() if any(c is emb for c in m.modules())}
            names = [n for n in names if n not in holders]
        return names

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator):
        return self.objective(self.model, batch, generator)


def check_launch_mode(distributed_type: str, fsdp_version: int | None = None, zero_stage: int | None = None) -> None:
    """Single process, DDP (CPU gloo, GPU nccl), FSDP version 1 and DeepSpeed ZeRO stage 2 are
    supported: the trainer gathers the sharded (partitioned) trained tensors and optimiser state
    for checkpoints (whole, written by rank 0, read back by every rank) and, under FSDP, unshards
    the model after the last step. FSDP2 (fully_shard) and other ZeRO stages are refused in one line."""
    kind = distributed_type.rsplit(".", 1)[-1]
    if kind == "DEEPSPEED" and zero_stage != 2:
        raise ConfigError(f"launch mode DEEPSPEED with zero_stage {zero_stage}: only ZeRO stage 2 is supported (the "
                          "trainer gathers ZeRO-2's partitioned optimiser state; ZeRO-3's partitioned weights are not "
                          "gathered for the adapter and evaluation); set deepspeed_config.zero_stage: 2 as in "
                          "examples/accelerate/deepspeed_zero2.yaml, or launch with FSDP (examples/accelerate/fsdp.yaml) "
                          "or DDP (examples/accelerate/multi_gpu.yaml)",
                          field="distributed_type")
    if kind == "FSDP" and fsdp_version not in (None, 1):
        raise ConfigError(f"launch mode FSDP version {fsdp_version}: only fsdp_version 1 is supported (the trainer "
                          "unshards FSDP1's wrapped modules after training); set fsdp_config.fsdp_version: 1 as in "
                          "examples/accelerate/fsdp.yaml", field="distributed_type")


def replicated_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Under FSDP, the largest submodules all of whose parameters are trained (a trajectory
    adapter and its head, LoRA's A / B, a multi-task model's adapters), when the model also has
    frozen ones: they are left out of sharding (FSDP ``ignored_modules``), kept whole on every
    rank and their gradients averaged by ``sync_replicated_gradients``. FSDP1 gives every
    parameter it manages a gradient, a zero one when no row of the whole batch reached it, so
    AdamW would advance its moments and decay it where a single-process or DDP run skips it
    (grad None): a phase bank or a task adapter without a row. Full fine-tuning: none."""
    if all(p.requires_grad for p in model.parameters()):
        return []
    found: list[torch.nn.Module] = []

    def visit(module: torch.nn.Module) -> None:
        params = list(module.parameters())
        if params and all(p.requires_grad for p in params):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return found


def sync_replicated_gradients(params: list[torch.nn.Parameter], device: torch.device) -> None:
    """Average the gradients of the FSDP-ignored trained parameters over the processes, as DDP
    with find_unused_parameters does: a parameter without a gradient on some ranks contributes
    zero there; one without a gradient on every rank keeps ``grad=None`` (AdamW skips it)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    has = torch.tensor([float(p.grad is not None) for p in params], device=device)
    dist.all_reduce(has)
    used = [p for p, n in zip(params, has.tolist()) if n > 0]
    if not used:
        return
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in used])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in used:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


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
    if hasattr(mlm, "activation_checkpointing_enable"):  # transformers >= 5.24 renamed it
        mlm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        mlm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
