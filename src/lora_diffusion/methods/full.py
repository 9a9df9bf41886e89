"""Full fine-tuning: every weight of the backbone is trained (the reference method)."""

from __future__ import annotations

from dataclasses import dataclass

from ..backbone import DiffusionLM
from .base import InBackboneMethod


@dataclass
class FullConfig:
    """Full fine-tuning has no options of its own (learning rate etc. live in the trainer)."""


class FullModel(InBackboneMethod):
    method = "full"

    def __init__(self, backbone: DiffusionLM, cfg: FullConfig | None = None):
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg or FullConfig()
        for p in backbone.parameters():
            p.requires_grad_(True)
