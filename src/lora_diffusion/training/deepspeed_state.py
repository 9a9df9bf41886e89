"""DeepSpeed ZeRO stage 2 for the trainer (through accelerate): the DeepSpeed config filled in
from ``train.*``, the backward of one micro-batch, and the trained tensors and AdamW state
gathered whole for rank 0's checkpoint (the files of a single-process run) and put back into
each rank's partition on resume (``Zero2``; every method of it is a collective: every rank
calls it, in the same order).

Under ZeRO-2 every rank keeps the whole weights; DeepSpeed partitions the fp32 master copy,
the AdamW moments and the gradients over the ranks (one flat tensor per parameter group,
which is what the client ``torch.optim.AdamW`` steps). The trainer keeps its own accumulation
(the loss divided by the micro-batches, ``scale_wrt_gas=False``), clipping at
``train.max_grad_norm`` (DeepSpeed's ``gradient_clipping``) and learning-rate schedule (the
``LambdaLR`` on the client optimizer, whose param groups DeepSpeed steps)."""

from __future__ import annotations

from typing import Any

import torch

KEYS = ("exp_avg", "exp_avg_sq")


def is_deepspeed(accelerator) -> bool:
    return str(accelerator.distributed_type).rsplit(".", 1)[-1] == "DEEPSPEED"


def configure(accelerator, cfg) -> int | None:
    """Under DeepSpeed, write the trainer's batch, accumulation and clipping into its config
    (before ``prepare``; DeepSpeed checks train_batch_size = micro x accumulation x processes)
    and return the ZeRO stage; otherwise None."""
    if not is_deepspeed(accelerator):
        return None
    plugin = accelerator.state.deepspeed_plugin
    accum = max(cfg.batch_size // (cfg.micro_batch_size * accelerator.num_processes), 1)
    plugin.deepspeed_config.update(train_micro_batch_size_per_gpu=cfg.micro_batch_size, train_batch_size=cfg.batch_size,
                                   gradient_accumulation_steps=accum, gradient_clipping=cfg.max_grad_norm)
    accelerator.gradient_accumulation_steps = accum
    return plugin.zero_stage


def touch(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Zero times every trained tensor, made before the forward and added to the loss: ZeRO-2
    reduces gradients in hooks, in the order they become ready, and needs the same tensors in
    the same order on every rank (a phase bank, a head without a row on one rank desynchronised
    the collectives). Autograd runs these nodes last (lowest sequence numbers), so every hook
    fires after the loss's own backward, in this fixed order; the gradients are unchanged."""
    return torch.stack([p.sum() for p in params]).sum() * 0.0


def reached(loss: torch.Tensor) -> set[int]:
    """Ids of the parameters the loss's graph reaches (what DDP's find_unused_parameters finds)."""
    found, seen, stack = set(), set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):
            found.add(id(node.variable))
        stack.extend(n for n, _ in node.next_functions)
    return found


def _flat(optimizer, param: torch.nn.Parameter) -> torch.Tensor:
    """The flat fp32 partition (the client optimizer's parameter) that holds ``param``'s fragment."""
    return optimizer.single_partition_of_fp32_groups[param._hp_mapping.param_group_index]


def _full(param: torch.nn.Parameter, local: torch.Tensor | None) -> torch.Tensor:
    """The whole tensor of ``param`` from each rank's fragment of ``local`` (its flat partition,
    or of an AdamW moment of it): an all-reduce, as DeepSpeed's ``get_full_hp_param``."""
    import deepspeed.comm as dist

    buffer = torch.zeros(param.numel(), dtype=torch.float32, device=param.device)
    mapping = param._hp_mapping
    if mapping is not None and local is not None:
        lp, hp = mapping.lp_fragment_address, mapping.hp_fragment_address
        buffer.narrow(0, lp.start, lp.numel).copy_(local.narrow(0, hp.start, hp.numel))
    dist.all_reduce(buffer, group=param._dp_group)
    return buffer.view_as(param)


class Zero2:
    """The trained tensors of a ZeRO-2 engine, as a single-process run with AdamW sees them.

    One process keeps an AdamW step count per tensor and skips a tensor without a gradient (a
    phase bank or task adapter that no row of the global batch reached); ZeRO steps one flat
    partition with one count, and a zero gradient for such a tensor. So after each DeepSpeed
    step a tensor no rank reached gets its weights, fp32 copy and moments back, and a reached
    tensor whose own count differs from the flat one gets its update redone with its own
    count (torch's AdamW formula on DeepSpeed's moments, which do not depend on the count)."""

    @classmethod
    def of(cls, accelerator, model, optimizer, trainable: list[tuple[str, torch.nn.Parameter]]) -> Zero2 | None:
        """The engine's ``Zero2`` under DeepSpeed, None otherwise."""
        return cls(accelerator, model, optimizer, [n for n, _ in trainable]) if is_deepspeed(accelerator) else None

    def __init__(self, accelerator, model, optimizer, names: list[str]):
        import deepspeed.comm as dist

        self.accelerator, self.optimizer, self.names = accelerator, optimizer, names
        found = dict(model.module.named_parameters())
        self.params = [found[f"model.{n}"] for n in names]
        self.touched: torch.Tensor | None = None
        # before the forward of every micro-batch (see touch): a hook on the wrapped module
        model.module.register_forward_pre_hook(lambda module, args: setattr(self, "touched", touch(self.params)))
        has = torch.tensor([float(getattr(p, "_hp_mapping", None) is not None) for p in self.params])
        dist.all_reduce(has)
        if not bool((has > 0).all()):
            raise RuntimeError("DeepSpeed: a trained tensor is not in ZeRO's partitions (only ZeRO stage 2 is supported)")
        self.steps = [0] * len(names)  # AdamW steps of each tensor, as in one process
        self.used: set[int] = set()

    @property
    def inner(self) -> torch.optim.Optimizer:
        return self.optimizer.optimizer

    def _fragment(self, p: torch.nn.Parameter, key: str) -> torch.Tensor:
        hp = p._hp_mapping.hp_fragment_address
        flat = _flat(self.optimizer, p)
        return (flat if key == "fp32" else self.inner.state[flat][key]).narrow(0, hp.start, hp.numel)

    def _snapshot(self, p: torch.nn.Parameter, whole: bool) -> dict[str, torch.Tensor]:
        saved = {"weight": p.detach().clone()} if whole else {}
        if p._hp_mapping is not None:
            flat = _flat(self.optimizer, p)
            keys = ("fp32", *(k for k in KEYS if whole and k in self.inner.state.get(flat, {})))
            saved.update({k: self._fragment(p, k).clone() for k in keys})
        return saved

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        """One micro-batch's backward (``loss`` already divided by the micro-batches): DeepSpeed
        reduces and steps (clipping included) at the last one, the accumulation boundary."""
        import deepspeed.comm as dist

        self.used |= reached(loss)
        kept: dict[int, dict[str, torch.Tensor]] = {}
        if last:
            flags = torch.tensor([float(id(p) in self.used) for p in self.params])
            dist.all_reduce(flags)
            reached_any = [f > 0 for f in flags.tolist()]
            for i, p in enumerate(self.params):
                self.steps[i] += int(reached_any[i])
                kept[i] = self._snapshot(p, whole=not reached_any[i])
            self.used = set()
        state = self.accelerator.gradient_state
        state._set_sync_gradients(last)
        try:
            self.accelerator.backward(loss + self.touched, scale_wrt_gas=False)
        finally:
            state._set_sync_gradients(True)
            self.touched = None
        if last:
            self._after_step(kept)

    @torch.no_grad()
    def _after_step(self, kept: dict[int, dict[str, torch.Tensor]]) -> None:
        group = self.inner.param_groups[0]
        flat_step = max(float(s["step"]) for s in self.inner.state.values())
        for i, saved in kept.items():
            p = self.params[i]
            if "weight" in saved:  # reached by no row: as if AdamW had skipped it
                p.copy_(saved.pop("weight"))
                for key, value in saved.items():
                    self._fragment(p, key).copy_(value)
                continue
            if self.steps[i] == flat_step:
                continue
            if p._hp_mapping is not None:  # redo this rank's fragment of the update with the tensor's own count
                lr, (beta1, beta2), step = group["lr"], group["betas"], self.steps[i]
                new = saved["fp32"].mul_(1 - lr * group["weight_decay"])
                denom = (self._fragment(p, "exp_avg_sq").sqrt() / (1 - beta2**step) ** 0.5).add_(group["eps"])
                new.addcdiv_(self._fragment(p, "exp_avg"), denom, value=-lr / (1 - beta1**step))
                self._fragment(p, "fp32").copy_(new)
            p.copy_(_full(p, _flat(self.optimizer, p) if p._hp_mapping is not None else None))

    def gather(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The trained tensors (DeepSpeed's fp32 master copy) and the AdamW state, whole and keyed
        as in a single-process run, on every rank (rank 0 writes them)."""
        weights, state = {}, {}
        for i, (name, p) in enumerate(zip(self.names, self.params)):
            flat = _flat(self.optimizer, p) if p._hp_mapping is not None else None
            weights[name] = _full(p, flat).detach().cpu().contiguous()
            saved = self.inner.state.get(flat, {}) if flat is not None else {}
            moments = {k: _full(p, saved.get(k)).detach().cpu() for k in KEYS}
            if self.steps[i]:  # one process: no state before a tensor's first gradient
                state[i] = {"step": torch.tensor(float(self.steps[i])), **moments}
        group = {k: v for k, v in self.inner.param_groups[0].items() if k != "params"}
        return weights, {"state": state, "param_groups": [{**group, "params": list(range(len(self.names)))}]}

    @torch.no_grad()
    def scatter(self, weights: dict[str, torch.Tensor], optim: dict[str, Any]) -> None:
        """Load whole tensors and AdamW state (read by every rank) into the weights (whole on every
        rank), this rank's fp32 partition and its AdamW moments."""
        saved = {self.names[int(i)]: s for i, s in optim["state"].items()}
        self.steps = [int(float(saved[n]["step"])) if n in saved else 0 for n in self.names]
        for name, p in zip(self.names, self.params):
            p.copy_(weights[name].to(p.device, p.dtype))
            if p._hp_mapping is None:
                continue
            lp, hp = p._hp_mapping.lp_fragment_address, p._hp_mapping.hp_fragment_address
            flat = _flat(self.optimizer, p)
            flat.narrow(0, hp.start, hp.numel).copy_(weights[name].reshape(-1).narrow(0, lp.start, lp.numel))
            if not any(self.steps):
                continue
            slot = self.inner.state[flat]
            if "step" not in slot:
                slot.update(step=torch.tensor(float(max(self.steps))), **{k: torch.zeros_like(flat) for k in KEYS})
            for key in KEYS:  # a tensor that no step reached yet keeps zeros
                if name in saved:
                    value = saved[name][key].reshape(-1).narrow(0, lp.start, lp.numel)
                    slot[key].narrow(0, hp.start, hp.numel).copy_(value)
        # DeepSpeed links its fragments to the moments set here at its next step
        self.optimizer._hp_optimizer_states_linked = False
        group = {k: v for k, v in optim["param_groups"][0].items() if k != "params"}
        for inner_group in self.inner.param_groups:
            inner_group.update(group)
