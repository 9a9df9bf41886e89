"""Masked (absorbing-state) diffusion math as small pure functions."""

from .forward import forward_mask, mask_at_rate, mask_probability, sample_steps
from .loss import diffusion_loss, elbo_loss, simple_loss, token_nll
from .schedules import (
    SCHEDULES,
    Schedule,
    alpha_at_step,
    elbo_weight,
    get_schedule,
    step_to_time,
    time_to_step,
    unmask_probability,
)

__all__ = [
    "SCHEDULES",
    "Schedule",
    "alpha_at_step",
    "diffusion_loss",
    "elbo_loss",
    "elbo_weight",
    "forward_mask",
    "get_schedule",
    "mask_at_rate",
    "mask_probability",
    "sample_steps",
    "simple_loss",
    "step_to_time",
    "time_to_step",
    "token_nll",
    "unmask_probability",
]
