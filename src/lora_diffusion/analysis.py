"""Effective rank of the trajectory perturbations (paper Eq. 28), per phase.

For the stacked perturbations Delta (N, D) that a trained adapter adds at the response
positions over a data set, with singular values s_1 >= ... >= s_D:

    p_i = s_i / sum_j s_j,     r_eff = exp(-sum_i p_i log p_i)

It measures the composed delta_t = sigma(t) sum_i g_i(h_t, t, c) (FiLM included), not the raw
weight matrices.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .data.encoding import pad_collate
from .diffusion import forward_mask, get_schedule, mask_probability
from .methods.trajectory import PHASES, TrajectoryModel, phase_index


def effective_rank(singular_values: torch.Tensor) -> float:
    """exp of the entropy of the normalised singular values (1 for rank one, n for a flat spectrum)."""
    s = singular_values.double().clamp(min=0)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


def phase_steps(num_steps: int, boundaries: list[float]) -> dict[str, list[int]]:
    steps = torch.arange(1, num_steps + 1)
    phases = phase_index(steps, num_steps, boundaries)
    return {name: steps[phases == i].tolist() for i, name in enumerate(PHASES)}


@torch.no_grad()
def collect_deltas(model: TrajectoryModel, data, batch_size: int = 32, seed: int = 0,
                   max_rows: int = 0) -> dict[str, torch.Tensor]:
    """Per phase, delta_t at the response positions for every row, with t drawn uniformly from
    that phase's steps and x_t drawn from q(x_t | x_0) at that t: {phase: (N, D)}."""
    model.eval()
    backbone = model.backbone
    schedule, T = get_schedule(backbone.diffusion.schedule), backbone.diffusion.num_steps
    gen = torch.Generator().manual_seed(seed)
    n = min(len(data), max_rows) if max_rows else len(data)
    out: dict[str, list[torch.Tensor]] = {p: [] for p in PHASES}
    for name, steps_of_phase in phase_steps(T, model.cfg.boundaries).items():
        pool = torch.tensor(steps_of_phase)
        for start in range(0, n, batch_size):
            batch = pad_collate([data[i] for i in range(start, min(start + batch_size, n))], backbone.pad_token_id)
            gmask, instr = batch["generate_mask"].bool(), batch["instruction_mask"].bool()
            steps = pool[torch.randint(len(pool), (gmask.shape[0],), generator=gen)]
            x_t, _ = forward_mask(batch["input_ids"], gmask, mask_probability(schedule, steps, T),
                                  backbone.mask_token_id, gen)
            h = backbone.hidden_states(x_t, batch["attention_mask"], steps)
            delta = model.adapter.delta(h, steps, instr, x_t)
            out[name].append(delta[gmask].float())
    return {p: torch.cat(v) for p, v in out.items() if v}


def analyze_rank(model: TrajectoryModel, data, **kw: Any) -> dict[str, Any]:
    """{phase: {effective_rank, nominal_rank, singular_values, rows}} for a trained adapter."""
    result = {}
    for i, (name, deltas) in enumerate(collect_deltas(model, data, **kw).items()):
        s = torch.linalg.svdvals(deltas)
        result[name] = {
            "effective_rank": effective_rank(s),
            "nominal_rank": model.cfg.ranks[i] * model.cfg.num_modules,
            "rows": int(deltas.shape[0]),
            "mean_norm": float(deltas.norm(dim=1).mean()),
            "singular_values": s.tolist(),
        }
    return result

