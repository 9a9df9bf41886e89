"""Deep trajectory: time- and instruction-conditioned perturbations of the hidden states at
chosen trunk layers (a variant beyond the paper, whose perturbation acts on the last layer only).

At each chosen layer l (0-based; negative counts from the end) the layer's output becomes

    h^l_t <- h^l_t + sigma(t) * sum_i g^l_i(h^l_t, t, c),   g^l_i as in ``trajectory_bank``

with one bank of k modules of rank ``deep_rank`` per layer, shared by the three phases (each
phase keeps its own scale sigma_p). Every position is perturbed (later layers read them all).
The trunk's weights stay frozen, but the backward pass now runs through the layers above the
lowest chosen one: that extra cost is the price of this variant (measured by the benchmarks).

With the trunk instruction encoder, Enc(c) pools the (unperturbed) output of the lowest chosen
layer, computed once per forward and shared with the other layers and the final phase banks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import ConfigError
from .trajectory_bank import PhaseBank

Tensor = torch.Tensor


def resolve_layers(layers: list[int], num_layers: int) -> list[int]:
    """0-based layer indices (negatives from the end), checked, sorted and unique."""
    out = set()
    for i in layers:
        if not -num_layers <= i < num_layers:
            raise ConfigError(f"deep_layers: layer {i} does not exist (the trunk has {num_layers} layers)",
                              field="deep_layers")
        out.add(i % num_layers)
    return sorted(out)


class DeepSites(nn.Module):
    """One ``PhaseBank`` per chosen layer and the forward hooks that add its perturbation.

    ``context`` is set by the owning model around each trunk pass: a dict with ``steps`` (B,),
    ``sigma`` (B,) the scale of each row's phase, ``e`` Emb(t) (B, d_t), and either ``c``
    (B, C) or ``encode`` (a callable of the first site's hidden states giving c)."""

    def __init__(self, layers: list[int], hidden: int, time_dim: int, cond_dim: int, rank: int, k: int,
                 beta_rank: int = 0):
        super().__init__()
        self.layers = list(layers)
        self.banks = nn.ModuleDict({str(i): PhaseBank(hidden, time_dim, cond_dim, rank, k, beta_rank)
                                    for i in self.layers})
        self.context: dict | None = None
        self._handles: list = []

    def attach(self, stack: nn.ModuleList) -> None:
        """Register one forward hook per chosen layer of ``stack``."""
        for i in self.layers:
            self._handles.append(stack[i].register_forward_hook(self._hook(i)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, layer: int) -> Callable:
        def hook(module: nn.Module, args, output):
            ctx = self.context
            if ctx is None:  # the trunk run outside the owning model: no perturbation
                return output
            h = output[0] if isinstance(output, tuple) else output
            if ctx.get("c") is None:
                ctx["c"] = ctx["encode"](h)
            delta = ctx["sigma"].to(h.dtype)[:, None, None] * self.banks[str(layer)](h, ctx["e"], ctx["c"])
            h = h + delta.to(h.dtype)
            return (h, *output[1:]) if isinstance(output, tuple) else h
        return hook

    def factors(self) -> list[list[tuple[Tensor, Tensor]]]:
        """The (W_A, W_B) factors of each layer's bank."""
        return [bank.factors() for bank in self.banks.values()]

