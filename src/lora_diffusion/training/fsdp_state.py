"""FSDP (v1) state handling for the trainer: whole tensors and optimiser state gathered for
rank 0's checkpoint, loaded back into the shards on resume, and the model unsharded after the
last step. Every function here is a collective: every rank calls it."""

from __future__ import annotations

from typing import Any

import torch


def gather(model, optimizer: torch.optim.Optimizer, names: list[str], device: torch.device
           ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """FSDP: the trained tensors and the optimiser state, whole, for rank 0 to write (a
    collective: every rank calls it; on GPUs the others get empty dicts), keyed as in a
    single-process run, so that the checkpoint is the same files."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    # cpu_offload (rank 0 only, on the host): on GPUs; with CPU parameters FSDP1's offload copy
    # crashed rank 0 here (segmentation fault, torch 2.13), and every rank keeps the whole tensors
    opts = StateDictOptions(full_state_dict=True, cpu_offload=device.type != "cpu",
                            ignore_frozen_params=True)
    full = get_model_state_dict(model, options=opts)
    optim = get_optimizer_state_dict(model, optimizer, options=opts)
    weights = {n: full[f"model.{n}"].detach().cpu().contiguous() for n in names if f"model.{n}" in full}
    state = {i: optim["state"][f"model.{n}"] for i, n in enumerate(names) if f"model.{n}" in optim.get("state", {})}
    groups = [{**g, "params": list(range(len(names)))} for g in optim.get("param_groups", [])[:1]]
    return weights, {"state": state, "param_groups": groups}


def scatter(model, optimizer: torch.optim.Optimizer, names: list[str], weights: dict[str, torch.Tensor],
            optim: dict[str, Any]) -> None:
    """FSDP: load whole tensors and optimiser state (read by every rank) into the shards."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, {f"model.{n}": v for n, v in weights.items()},
                         options=StateDictOptions(full_state_dict=True, strict=False))
    state = {f"model.{names[int(i)]}": v for i, v in optim["state"].items()}
    groups = [{**g, "params": [f"model.{n}" for n in names]} for g in optim["param_groups"]]
    # strict=False: a tensor that no step has reached yet has no AdamW state, as in one process
    set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups},
                             options=StateDictOptions(full_state_dict=True, strict=False))


def unshard(model, accelerator):
    """FSDP, after the last step: every rank gathers the whole parameters and the FSDP
    wrappers are taken out of the model, so that what follows (``unwrapped``: saving the
    adapter, evaluating on rank 0) sees a plain model, as after a DDP run. The model then
    has to fit on one device, as it must for evaluation anyway; training cannot go on. Returns
    the plain model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FullyShardedDataParallel

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    root = accelerator.unwrap_model(model)
    stack = [root]
    while stack:
        module = stack.pop()
        for name, child in list(module.named_children()):
            while isinstance(child, FullyShardedDataParallel):
                child = child.module
                setattr(module, name, child)
            stack.append(child)
    with torch.no_grad():
        for name, p in root.named_parameters():
            p.data = full[name].to(p.device)
    # drop the sharded copy (accelerate keeps a reference to the wrapped model)
    accelerator._models = [m for m in accelerator._models if m is not model]
    return root
