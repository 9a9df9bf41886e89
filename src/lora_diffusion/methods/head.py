"""Classification head: the third accuracy, a linear probe trained with the method.

    p(y | x_t) = softmax(W h'_t[a] + b),   W: (num_labels, D), b: (num_labels,)

h'_t[a] is the final (method-perturbed) hidden state at the *anchor* a, the first response
position, at a step where that position is still [MASK]: in training wherever the forward
process masked it (random t, as the denoising loss), after reverse diffusion the state of
the step that decoded it. The head never sees the decoded label token, so its accuracy is
not a copy of the generation accuracy, and it needs no extra trunk pass.
Its D * num_labels + num_labels parameters are counted with the method's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..backbone import unwrap_backbone

Tensor = torch.Tensor


def attach_head(model: nn.Module, num_labels: int, weight: float = 1.0) -> nn.Module:
    """Give ``model`` a trainable ``cls_head`` (Linear(D, num_labels)) whose loss is added to
    the denoising loss with ``weight``."""
    if num_labels < 2:
        raise ValueError(f"a classification head needs >= 2 labels, got {num_labels}")
    if weight < 0:
        raise ValueError(f"head_loss_weight must be >= 0, got {weight}")
    model.cls_head = nn.Linear(unwrap_backbone(model).hidden_size, num_labels)
    model.cls_head_weight = float(weight)
    return model


def head_of(model: nn.Module) -> nn.Linear | None:
    return getattr(getattr(model, "module", model), "cls_head", None)


def anchor_mask(generate_mask: Tensor) -> Tensor:
    """The first response position of every row: (B, L) bool -> (B, L) bool, one True per row
    that has a response."""
    gen = generate_mask.bool()
    return gen & (torch.cumsum(gen.long(), dim=1) == 1)


def head_loss(head: nn.Linear, hidden: Tensor, select: Tensor, generate_mask: Tensor,
              labels: Tensor) -> tuple[Tensor, int]:
    """Cross-entropy of the head at the anchors among the ``select`` positions.
    ``hidden`` (N, D) is in ``select.nonzero()`` order; returns (mean loss, rows scored);
    a batch where no anchor is masked contributes 0 (with a graph, so DDP stays in step)."""
    at_anchor = anchor_mask(generate_mask)[select]  # (N,)
    rows = select.nonzero()[:, 0][at_anchor]
    if rows.numel() == 0:
        return head.weight.sum() * 0.0, 0
    logits = head(hidden[at_anchor].to(head.weight.dtype))
    return F.cross_entropy(logits.float(), labels[rows]), int(rows.numel())


def head_predictions(head: nn.Linear, anchor_hidden: Tensor) -> Tensor:
    """Predicted label ids from anchor hidden states (B, D) -> (B,)."""
    return head(anchor_hidden.to(head.weight.dtype)).argmax(-1)
