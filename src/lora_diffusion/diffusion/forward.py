"""Forward absorbing process q(x_t | x_0) and the draw of training timesteps.

Shapes: B rows, L positions. ``generate_mask`` (B, L) bool marks the positions the model
must generate (the response); instruction / prompt tokens and padding are False there and
are never masked, never scored.
"""

from __future__ import annotations

import torch

from .schedules import Schedule, alpha_at_step

Tensor = torch.Tensor


def sample_steps(
    batch_size: int, num_steps: int, generator: torch.Generator, stratified: bool = False
) -> Tensor:
    """Draw s ~ Uniform{1..T} for each row: (B,) int64.

    With ``stratified`` the B draws cover [0, 1) in B equal strata (one uniform per stratum,
    the low-discrepancy sampler of Kingma et al. / MDLM), which lowers the variance of
    batch-mean losses without changing their expectation."""
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    if stratified:
        u = (torch.arange(batch_size, dtype=torch.float64) + u) / batch_size
    return (torch.floor(u * num_steps) + 1).long().clamp(1, num_steps)


def mask_probability(schedule: Schedule, steps: Tensor, num_steps: int) -> Tensor:
    """Per-row masking probability 1 - alpha_s for steps (B,) -> (B,) float64."""
    return 1.0 - alpha_at_step(schedule, steps, num_steps)


def forward_mask(
    x0: Tensor,
    generate_mask: Tensor,
    mask_prob: Tensor,
    mask_token_id: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Sample x_t ~ q(x_t | x_0): each generate position independently becomes [MASK] with
    probability 1 - alpha_t = ``mask_prob`` (B,), every other position stays x_0.

        x_t^i = [MASK]  if generate^i and u^i < 1 - alpha_t,   else x_0^i,   u^i ~ U[0, 1)

    Returns (x_t (B, L) long, masked (B, L) bool). Uniforms are drawn on the CPU generator
    for device-independent reproducibility and then moved to ``x0``'s device.
    """
    u = torch.rand(x0.shape, generator=generator, dtype=torch.float64).to(x0.device)
    masked = generate_mask & (u < mask_prob.to(x0.device, torch.float64)[:, None])
    x_t = torch.where(masked, torch.full_like(x0, mask_token_id), x0)
    return x_t, masked


def mask_at_rate(
    x0: Tensor, generate_mask: Tensor, rate: float, mask_token_id: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``forward_mask`` with the same masking rate for every row (evaluation at 15/50/90%)."""
    probs = torch.full((x0.shape[0],), float(rate), dtype=torch.float64)
    return forward_mask(x0, generate_mask, probs, mask_token_id, generator)
