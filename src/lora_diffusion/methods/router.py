"""The task router of multi-task composition (paper Eq. 21) and its loss (Eq. 23).

    Enc(c) = masked mean of the frozen trunk's hidden states over the instruction c   (B, D)
    w      = softmax(Router(Enc(c))),  Router(x) = W_2 GELU(W_1 x + b_1) + b_2         (B, M)

W_1: (512, D), W_2: (M, 512): a 2-layer MLP with 512 hidden units (``width``); for D = 384
and M = 8 that is 201,224 parameters, counted under "router" in the accounting. Enc(c) is the
pooling of the trunk encoder (``conditioning.TrunkPoolEncoder``) without a task's own MLP: the
trunk states come from the step's one trunk pass, so routing costs no extra trunk call. The
instruction is clean at every step, so w moves only through attention to the response region.

Eq. 23 (joint training on mixed-task batches, row b of task j_b):

    L = mean_b [ -log w_{j_b}(c_b) ] + L_denoise(rows b through task j_b's modules)

``router_loss`` is the first term (a cross-entropy on the router's logits); the second is the
ordinary denoising objective with oracle routing (``MultiTaskTrajectoryModel.perturb``).
"""

from __future__ import annotations

import torch
from torch import nn

from .conditioning import masked_mean

Tensor = torch.Tensor
ROUTER_WIDTH = 512


class Router(nn.Module):
    """Router(Enc(c)) over M tasks: logits (B, M); ``weights`` gives w = softmax (Eq. 21)."""

    def __init__(self, hidden: int, num_tasks: int, width: int = ROUTER_WIDTH):
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"a router needs at least one task, got {num_tasks}")
        self.num_tasks = num_tasks
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, num_tasks))

    @staticmethod
    def encode(h: Tensor, instruction_mask: Tensor | None) -> Tensor:
        """Enc(c): h (B, L, D), instruction_mask (B, L) -> (B, D); no gradient into the trunk."""
        return masked_mean(h.detach(), instruction_mask)

    def forward(self, h: Tensor, instruction_mask: Tensor | None) -> Tensor:
        """Router logits (B, M)."""
        x = self.encode(h, instruction_mask)
        return self.mlp(x.to(self.mlp[0].weight.dtype))

    def weights(self, h: Tensor, instruction_mask: Tensor | None) -> Tensor:
        """w = softmax(Router(Enc(c))): (B, M), rows sum to 1."""
        return torch.softmax(self(h, instruction_mask).float(), dim=-1)


def router_loss(logits: Tensor, task_ids: Tensor) -> Tensor:
    """Eq. 23's routing term: mean_b -log softmax(logits_b)[j_b]. logits (B, M), task_ids (B,).
    Its gradient with respect to the logits is (softmax(logits) - onehot(j)) / B."""
    return nn.functional.cross_entropy(logits.float(), task_ids.long())


def router_accuracy(logits: Tensor, task_ids: Tensor) -> float:
    """Fraction of rows whose largest router weight is their true task."""
    return float((logits.argmax(-1) == task_ids).float().mean()) if task_ids.numel() else 0.0
