"""Noise schedules of the absorbing (masking) diffusion process.

alpha(t) is the probability that a token is still clean at time t; 1 - alpha(t) is the
probability it has been replaced by [MASK]. Continuous time t lies in [0, 1] with
alpha(0) = 1 (clean) and alpha(1) ~ 0 (all masked). Discrete steps s = 1..T map to
continuous time by the single rule t = s / T (``step_to_time``); step 0 is clean data.

Every function takes and returns tensors of any shape (elementwise), in float32 or float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

LOGLINEAR_EPS = 1e-3


def linear_alpha(t: Tensor) -> Tensor:
    """alpha(t) = 1 - t."""
    return 1.0 - t


def linear_dalpha(t: Tensor) -> Tensor:
    """d alpha / dt = -1."""
    return -torch.ones_like(t)


def cosine_alpha(t: Tensor) -> Tensor:
    """alpha(t) = cos(pi t / 2)  (masks slowly at first, fast near t = 1)."""
    return torch.cos(0.5 * math.pi * t)


def cosine_dalpha(t: Tensor) -> Tensor:
    """d alpha / dt = -(pi / 2) sin(pi t / 2)."""
    return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


def loglinear_alpha(t: Tensor, eps: float = LOGLINEAR_EPS) -> Tensor:
    """MDLM's log-linear schedule: total noise sigma(t) = -log(1 - (1 - eps) t), so
    alpha(t) = exp(-sigma(t)) = 1 - (1 - eps) t, which keeps alpha(1) = eps > 0."""
    return 1.0 - (1.0 - eps) * t


def loglinear_dalpha(t: Tensor, eps: float = LOGLINEAR_EPS) -> Tensor:
    """d alpha / dt = -(1 - eps)."""
    return torch.full_like(t, -(1.0 - eps))


@dataclass(frozen=True)
class Schedule:
    """A named pair (alpha, d alpha / dt)."""

    name: str
    alpha: Callable[[Tensor], Tensor]
    dalpha: Callable[[Tensor], Tensor]


SCHEDULES: dict[str, Schedule] = {
    "linear": Schedule("linear", linear_alpha, linear_dalpha),
    "cosine": Schedule("cosine", cosine_alpha, cosine_dalpha),
    "loglinear": Schedule("loglinear", loglinear_alpha, loglinear_dalpha),
}


def get_schedule(name: str) -> Schedule:
    """Look a schedule up by name; an unknown name lists the known ones."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(
            f"unknown noise schedule {name!r}; known schedules: {sorted(SCHEDULES)}"
        ) from None


def step_to_time(step: Tensor | int, num_steps: int) -> Tensor:
    """Discrete step s in {0..T} -> continuous time t = s / T in [0, 1]."""
    step = torch.as_tensor(step, dtype=torch.float64)
    return step / num_steps


def time_to_step(t: Tensor | float, num_steps: int) -> Tensor:
    """Continuous t in (0, 1] -> the discrete step s = ceil(t T) in {1..T} containing it."""
    t = torch.as_tensor(t, dtype=torch.float64)
    # the tolerance keeps s / T -> s exact despite rounding (0.07 * 100 = 7.000000000000001)
    return torch.clamp(torch.ceil(t * num_steps - 1e-9), 1, num_steps).long()


def alpha_at_step(schedule: Schedule, step: Tensor | int, num_steps: int) -> Tensor:
    """alpha_s = alpha(s / T) for discrete steps (float64, same shape as ``step``)."""
    return schedule.alpha(step_to_time(step, num_steps))


def unmask_probability(schedule: Schedule, step: Tensor | int, num_steps: int) -> Tensor:
    """Reverse-step probability that a still-masked token is revealed at step s:

        p_s = (alpha_{s-1} - alpha_s) / (1 - alpha_s),   s = 1..T.

    p_1 = 1 because alpha_0 = 1, so the reverse chain never ends with a [MASK].
    """
    step = torch.as_tensor(step)
    a_prev = alpha_at_step(schedule, step - 1, num_steps)
    a_now = alpha_at_step(schedule, step, num_steps)
    return ((a_prev - a_now) / (1.0 - a_now)).clamp(0.0, 1.0)


def elbo_weight(schedule: Schedule, step: Tensor | int, num_steps: int) -> Tensor:
    """Weight of a masked token's cross-entropy in the T-step negative ELBO when the step s
    is drawn uniformly from {1..T} (MDLM, discrete time):

        w_s = T (alpha_{s-1} - alpha_s) / (1 - alpha_s).

    As T -> infinity it tends to the continuous-time weight -alpha'(t) / (1 - alpha(t)).
    """
    return num_steps * unmask_probability(schedule, step, num_steps)


def time_for_mask_rate(schedule: Schedule, rate: float, num_steps: int | None = None) -> float:
    """Invert 1 - alpha(t) = rate by bisection (alpha is decreasing). With ``num_steps`` the
    answer is rounded to the discrete step grid and returned as a step index."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"mask rate must lie in (0, 1], got {rate}")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if 1.0 - float(schedule.alpha(torch.tensor(mid, dtype=torch.float64))) < rate:
            lo = mid
        else:
            hi = mid
    t = 0.5 * (lo + hi)
    if num_steps is not None:
        return float(time_to_step(t, num_steps))
    return t
