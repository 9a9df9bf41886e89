"""Effective rank of the trajectory perturbations (paper Eq. 28), per phase.

For the stacked perturbations Delta (N, D) that a trained adapter adds at the response
positions over a data set, with singular values s_1 >= ... >= s_D:

    p_i = s_i / sum_j s_j,     r_eff = exp(-sum_i p_i log p_i)

It measures the composed delta_t = sigma(t) sum_i g_i(h_t, t, c) (FiLM included), not the raw
weight matrices (for the variants, ``TrajectoryModel.delta``: h'_t - h_t of the last layer).

Two perturbation sets (``analyze_rank(..., over=...)``):

- ``steps`` (Eq. 28 as written: over the steps of a phase): for every example and response
  position, the matrix Delta_p = [delta_t]_{t in phase p} (|p| x D), one row per step t of the
  phase, along one forward trajectory of that example (one uniform u per position; a position
  is masked at t when u < P(masked at t), so x_t gains masks as t grows, as in q). r_eff of each
  matrix; the figure is the mean (sd, median) over the (example, position) matrices;
- ``rows`` (the earlier figure): one delta_t per response position and example, at a t drawn
  from the phase, stacked over the data set (N x D).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .data.encoding import pad_collate
from .diffusion import forward_mask, get_schedule, mask_probability
from .methods.trajectory import PHASES, TrajectoryModel, phase_index
from .prompt_cache import prompt_layout


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
            with prompt_layout(backbone, gmask, batch["attention_mask"]):
                delta = model.delta(x_t, batch["attention_mask"], steps, instr)
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



@torch.no_grad()
def step_deltas(model: TrajectoryModel, data, steps_of_phase: list[int], batch_size: int = 32, seed: int = 0,
                max_rows: int = 0) -> torch.Tensor:
    """delta_t at every response position of every example for every t of ``steps_of_phase``,
    along one coupled forward trajectory per example: (positions, |steps|, D)."""
    model.eval()
    backbone = model.backbone
    schedule, T = get_schedule(backbone.diffusion.schedule), backbone.diffusion.num_steps
    gen = torch.Generator().manual_seed(seed)
    n = min(len(data), max_rows) if max_rows else len(data)
    out = []
    for start in range(0, n, batch_size):
        batch = pad_collate([data[i] for i in range(start, min(start + batch_size, n))], backbone.pad_token_id)
        gmask, instr, x0 = batch["generate_mask"].bool(), batch["instruction_mask"].bool(), batch["input_ids"]
        u = torch.rand(x0.shape, generator=gen)
        per_step = []
        for t in steps_of_phase:
            steps = torch.full((x0.shape[0],), t, dtype=torch.long)
            masked = gmask & (u < mask_probability(schedule, steps, T)[:, None])
            x_t = torch.where(masked, torch.full_like(x0, backbone.mask_token_id), x0)
            with prompt_layout(backbone, gmask, batch["attention_mask"]):
                per_step.append(model.delta(x_t, batch["attention_mask"], steps, instr)[gmask].float())
        out.append(torch.stack(per_step, dim=1))
    return torch.cat(out)


def analyze_rank_steps(model: TrajectoryModel, data, batch_size: int = 32, seed: int = 0,
                       max_rows: int = 0) -> dict[str, Any]:
    """{phase: {effective_rank (mean over matrices), effective_rank_sd, effective_rank_median,
    nominal_rank, steps, rows, positions, singular_values (mean normalised spectrum)}}."""
    T = model.backbone.diffusion.num_steps
    n = min(len(data), max_rows) if max_rows else len(data)
    result = {}
    for i, (name, steps) in enumerate(phase_steps(T, model.cfg.boundaries).items()):
        if not steps:
            continue
        deltas = step_deltas(model, data, steps, batch_size, seed, max_rows)  # (P, |steps|, D)
        s = torch.linalg.svdvals(deltas.double())  # (P, min(|steps|, D))
        ranks = torch.tensor([effective_rank(row) for row in s], dtype=torch.float64)
        spectra = s / s.sum(1, keepdim=True).clamp(min=1e-300)
        result[name] = {
            "effective_rank": float(ranks.mean()),
            "effective_rank_sd": float(ranks.std()) if len(ranks) > 1 else 0.0,
            "effective_rank_median": float(ranks.median()),
            "nominal_rank": model.cfg.ranks[i] * model.cfg.num_modules,
            "over": "steps",
            "steps": [min(steps), max(steps)],
            "rows": n,
            "positions": int(deltas.shape[0]),
            "mean_norm": float(deltas.norm(dim=2).mean()),
            "singular_values": spectra.mean(0).tolist(),
        }
    return result


@torch.no_grad()
def factor_spectra(model: TrajectoryModel, atol: float = 1e-3) -> dict[str, Any]:
    """The trained low-rank modules themselves, no data: for module i of each bank, its linear
    map M_i = W_A^(i) W_B^(i) (D x (D + time_dim); W_A (D, r), W_B (r, D + time_dim)), with
    singular values s_1 >= ... : {"<bank>/<i>": {nominal_rank r, nuclear_w_a = ||W_A||_*,
    nuclear_w_b, nuclear = ||M_i||_*, rank = #{s_j > atol} (absolute, so a module the rank
    penalty shrank to zero has rank 0), effective_rank = exp-entropy of s (Eq. 28's measure on
    M_i), orth = sum_{j != i} ||W_A^(i)T W_A^(j)||_F^2 (its share of the bank's R_orth, over
    ordered pairs), singular_values (s, descending)}}. Banks: the phases (or "shared"), then the
    deep sites."""
    adapter = model.adapter
    banks = list(adapter.all_factors())
    names = ["shared"] if len(adapter.banks) == 1 else list(PHASES[:len(adapter.banks)])
    names += [f"deep-site-{j}" for j in range(len(banks) - len(names))]
    out: dict[str, Any] = {}
    for name, factors in zip(names, banks):
        for i, (w_a, w_b) in enumerate(factors):
            s = torch.linalg.svdvals(w_a.double() @ w_b.double())
            orth = sum(float((w_a.double().t() @ other.double()).square().sum())
                       for j, (other, _) in enumerate(factors) if j != i)
            out[f"{name}/{i}"] = {
                "nominal_rank": int(w_a.shape[-1]),
                "nuclear_w_a": float(torch.linalg.svdvals(w_a.double()).sum()),
                "nuclear_w_b": float(torch.linalg.svdvals(w_b.double()).sum()),
                "nuclear": float(s.sum()), "rank": int((s > atol).sum()), "atol": atol,
                "effective_rank": effective_rank(s), "orth": orth, "singular_values": s[: w_a.shape[-1]].tolist(),
            }
    return out
