"""BitFit (Ben Zaken et al., 2022): train only the bias terms of the base (trunk and head,
LayerNorm biases included); every weight matrix stays frozen."""

from __future__ import annotations

from dataclasses import dataclass

from ..backbone import DiffusionLM
from .base import InBackboneMethod


@dataclass
class BitFitConfig:
    """BitFit has no options: the set of trained tensors is every ``*.bias``."""


class BitFitModel(InBackboneMethod):
    method = "bitfit"

    def __init__(self, backbone: DiffusionLM, cfg: BitFitConfig | None = None):
        super().__init__()
        self.backbone, self.cfg = backbone, cfg or BitFitConfig()
        trained = 0
        for name, p in backbone.named_parameters():
            p.requires_grad_(name.endswith("bias"))
            trained += p.requires_grad
        if not trained:
            raise ValueError("BitFit: this base has no bias terms to train")
