"""Bottleneck adapters (Houlsby et al., 2019) after the attention and feed-forward sublayers of
every layer: y = f(x) + W_up act(W_down f(x)), applied to the sublayer's output projection f
before its residual connection and LayerNorm. W_down is random and W_up zero, so the model
starts as the base and both factors train (zeroing both would train nothing)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbone import DiffusionLM
from ..config import require
from .base import InBackboneMethod
from .targets import ADAPTER_SITES, matching_linears, out_features, targets_for


@dataclass
class BottleneckConfig:
    bottleneck: int = 256
    init_std: float = 0.02

    def __post_init__(self) -> None:
        require(self.bottleneck >= 1, "bottleneck", f"must be >= 1, got {self.bottleneck}")
        require(self.init_std > 0, "init_std", f"must be > 0, got {self.init_std}")


class Bottleneck(nn.Module):
    """x -> x + W_up GELU(W_down x + b_down) + b_up, for x (..., D)."""

    def __init__(self, dim: int, bottleneck: int, init_std: float):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(nn.functional.gelu(self.down(x)))


class AdaptedLinear(nn.Module):
    """A frozen linear layer followed by a bottleneck adapter."""

    def __init__(self, linear: nn.Linear, adapter: Bottleneck):
        super().__init__()
        self.linear, self.adapter = linear, adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.linear(x))


class BottleneckModel(InBackboneMethod):
    method = "adapter"

    def __init__(self, backbone: DiffusionLM, cfg: BottleneckConfig):
        super().__init__()
        self.backbone, self.cfg = backbone, cfg
        for p in backbone.parameters():
            p.requires_grad_(False)
        sites = matching_linears(backbone.mlm, targets_for(ADAPTER_SITES, backbone.mlm, "adapters"))
        for name, linear in sites:
            parent_name, _, child = name.rpartition(".")
            parent = backbone.mlm.get_submodule(parent_name)
            adapter = Bottleneck(out_features(linear), cfg.bottleneck, cfg.init_std).to(linear.weight.dtype)
            setattr(parent, child, AdaptedLinear(linear, adapter))
        self.num_sites = len(sites)
