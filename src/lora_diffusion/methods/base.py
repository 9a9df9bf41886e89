"""Common base of the methods that change the backbone itself (weights, biases, attention)."""

from __future__ import annotations

import torch
from torch import nn


class InBackboneMethod(nn.Module):
    """A method whose changes live inside the backbone: the forward is the backbone's own
    (the instruction is just part of the clean input the trunk sees)."""

    method = "?"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, steps: torch.Tensor,
                select: torch.Tensor | None = None, instruction_mask: torch.Tensor | None = None,
                return_hidden: bool = False):
        return self.backbone(input_ids, attention_mask, steps, select=select, return_hidden=return_hidden)
