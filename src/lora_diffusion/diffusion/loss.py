"""Denoising losses of masked diffusion, computed from logits at the masked positions only.

N is the number of masked positions in the batch; logits are (N, V), targets (N,), and
``row_of`` (N,) gives the batch row of each masked position (``masked.nonzero()[:, 0]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .schedules import Schedule, elbo_weight

Tensor = torch.Tensor

LOSS_KINDS = ("simple", "elbo")


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """-log p_theta(x_0^i | x_t) for each masked position: (N, V), (N,) -> (N,) float32."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def simple_loss(nll: Tensor) -> Tensor:
    """L_simple (the paper's objective): the unweighted mean cross-entropy per masked token,

        L = (1 / N) sum_{i masked} -log p_theta(x_0^i | x_t).

    An empty selection (N = 0, possible at small t) gives 0 with a valid graph."""
    return nll.sum() / max(nll.numel(), 1)


def elbo_loss(
    nll: Tensor,
    row_of: Tensor,
    steps: Tensor,
    num_generate: Tensor,
    schedule: Schedule,
    num_steps: int,
) -> Tensor:
    """MDLM's negative ELBO per token (an upper bound on -log p(x_0) / token):

        L = sum_b w_{s_b} sum_{i masked in b} -log p_theta(x_0^i | x_t)  /  sum_b n_b,

    with w_s = T (alpha_{s-1} - alpha_s) / (1 - alpha_s) (``elbo_weight``), s_b the step of
    row b (B,) and n_b its number of generate positions (B,). The normaliser is the number
    of generated tokens, not the number masked: dividing by the masked count instead would
    no longer bound the likelihood."""
    w = elbo_weight(schedule, steps, num_steps).to(nll.device, nll.dtype)
    total = max(int(num_generate.sum()), 1)
    return (w[row_of] * nll).sum() / total


def diffusion_loss(
    kind: str,
    logits: Tensor,
    targets: Tensor,
    row_of: Tensor,
    steps: Tensor,
    num_generate: Tensor,
    schedule: Schedule,
    num_steps: int,
) -> Tensor:
    """Dispatch to ``simple_loss`` or ``elbo_loss`` by name."""
    nll = token_nll(logits, targets)
    if kind == "simple":
        return simple_loss(nll)
    if kind == "elbo":
        return elbo_loss(nll, row_of, steps, num_generate, schedule, num_steps)
    raise ValueError(f"unknown loss kind {kind!r}; expected one of {LOSS_KINDS}")
