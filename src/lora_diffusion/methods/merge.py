"""Parameter-space merges: the baselines of composition (one model, the trunk's cost only).

- ``average_merge``: theta = sum_j w_j theta_j over every trained tensor of M adapters of one
  method and one config: averaging of trajectory adapters (the paper's "Average"; with
  weights not summing to 1, task arithmetic on the adapter's parameters) and of bottleneck
  adapters (``adapter``). A classification head is not merged (composed tasks are free text).
- ``lora_merge``: weight LoRA through peft's own ``add_weighted_adapter`` (s_j = alpha_j / r_j):
  ``linear``: A = sum_j sign(w_j) sqrt(|w_j s_j|) A_j, B = sum_j sqrt(|w_j s_j|) B_j (peft's
  definition: the factors are averaged, so Delta W = B A holds cross terms B_i A_j);
  ``cat``: exact task arithmetic, Delta W = sum_j w_j s_j B_j A_j (rank sum_j r_j);
  ``ties`` / ``dare_linear`` / ``dare_ties``: the same factor-wise combination after TIES's
  trimming and sign election or DARE's random drop and rescale (``density``: the kept
  fraction; the drop is seeded); ``svd`` / ``*_svd``: the combination applied to the
  Delta W_j = s_j B_j A_j themselves, re-factored by SVD at rank max_j r_j. A (r, d_in), B (d_out, r).
  The result is an ordinary ``lora`` method with r = alpha = peft's new rank (scaling 1), saved,
  loaded and merged like any other.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..backbone import DiffusionLM
from .lora import quiet_peft
from .registry import apply_method, method_config

LORA_COMBINATIONS = ("linear", "cat", "ties", "dare_linear", "dare_ties", "svd", "ties_svd", "dare_linear_svd",
                     "dare_ties_svd", "magnitude_prune")
AVERAGED_METHODS = ("trajectory", "adapter", "bitfit")


def average_states(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """sum_j w_j state_j, tensor by tensor (every state holds the same names and shapes)."""
    if len(states) != len(weights) or not states:
        raise ValueError(f"need one weight per adapter: {len(states)} adapters, {len(weights)} weights")
    names = set(states[0])
    for j, s in enumerate(states[1:], start=1):
        if set(s) != names:
            raise ValueError(f"adapter {j} holds other tensors than adapter 0 (another config?)")
    out = {}
    for name in states[0]:
        shapes = {tuple(s[name].shape) for s in states}
        if len(shapes) != 1:
            raise ValueError(f"tensor {name} has different shapes {sorted(shapes)}: the adapters' configs differ")
        out[name] = sum(w * s[name].float() for w, s in zip(weights, states)).to(states[0][name].dtype)
    return out


def average_merge(models: list[torch.nn.Module], weights: list[float], backbone: DiffusionLM) -> torch.nn.Module:
    """One model of the same method on ``backbone`` whose trained tensors are sum_j w_j theta_j."""
    methods = {m.method for m in models}
    if len(methods) != 1 or next(iter(methods)) not in AVERAGED_METHODS:
        raise ValueError(f"parameter averaging merges adapters of one method among {AVERAGED_METHODS}, "
                         f"got {sorted(methods)}")
    configs = [m.cfg for m in models]
    if any(c != configs[0] for c in configs):
        raise ValueError("the adapters have different method configs: parameter averaging needs one")
    states = [{n: p.detach() for n, p in m.named_parameters() if p.requires_grad and not n.startswith("cls_head.")}
              for m in models]
    merged = apply_method(models[0].method, backbone, configs[0])
    missing, _ = merged.load_state_dict(average_states(states, weights), strict=False)
    trained = {n for n, p in merged.named_parameters() if p.requires_grad}
    if trained & set(missing):
        raise ValueError(f"merge left tensors unset: {sorted(trained & set(missing))[:3]}")
    return merged.eval()


def peft_weighted(backbone: DiffusionLM, peft_dirs: dict[str, str | Path], weights: list[float], combination: str,
                  density: float | None = None, seed: int = 0):
    """peft's own ``add_weighted_adapter`` over the saved peft copies on ``backbone.mlm`` (which
    it modifies): returns the PeftModel holding adapter ``composed``."""
    from peft import PeftModel

    if combination not in LORA_COMBINATIONS:
        raise ValueError(f"unknown LoRA combination {combination!r}; choose from {LORA_COMBINATIONS}")
    names = list(peft_dirs)
    with quiet_peft():
        model = PeftModel.from_pretrained(backbone.mlm, str(peft_dirs[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(peft_dirs[name]), adapter_name=name)
    torch.manual_seed(seed)  # DARE's random drop
    kwargs = {"density": density} if density is not None else {}
    model.add_weighted_adapter(names, list(weights), "composed", combination_type=combination, **kwargs)
    return model


def lora_merge(peft_dirs: dict[str, str | Path], weights: list[float], combination: str, scratch: DiffusionLM,
               backbone: DiffusionLM, density: float | None = None, seed: int = 0) -> torch.nn.Module:
    """A ``lora`` method model on ``backbone`` holding peft's ``composed`` adapter, computed on
    ``scratch`` (another copy of the same base, consumed here)."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    peft_model = peft_weighted(scratch, peft_dirs, weights, combination, density, seed)
    rank = peft_model.peft_config["composed"].r
    state = get_peft_model_state_dict(peft_model, adapter_name="composed")
    merged = apply_method("lora", backbone, method_config("lora", {"rank": rank, "alpha": float(rank)}))
    result = set_peft_model_state_dict(merged.peft_model, state, adapter_name="default")
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise ValueError(f"peft's merged adapter did not fit a rank-{rank} LoRA: {unexpected[:3]}")
    return merged.eval()
