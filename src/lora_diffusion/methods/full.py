"""Full fine-tuning: every weight of the backbone is trained (the reference method)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbone import DiffusionLM


@dataclass
class FullConfig:
    """Full fine-tuning has no options of its own (learning rate etc. live in the trainer)."""


class FullModel(nn.Module):
    method = "full"

    def __init__(self, backbone: DiffusionLM, cfg: FullConfig | None = None):
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg or FullConfig()
        for p in backbone.parameters():
            p.requires_grad_(True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, steps: torch.Tensor,
                select: torch.Tensor | None = None, instruction_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone(input_ids, attention_mask, steps, select=select)
