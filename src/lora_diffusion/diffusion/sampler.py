"""Reverse sampler of the absorbing process (the paper's Algorithm 1, masked diffusion form).

Start with every response position set to [MASK]; for s = T..1 reveal each still-masked
position with probability p_s = (alpha_{s-1} - alpha_s) / (1 - alpha_s), drawing its token
from the model's prediction at step s. p_1 = 1, so nothing stays masked. Alternatives:
LLaDA's low-confidence remasking (reveal the most confident predictions, as many per step
as the schedule expects) and semi-autoregressive blocks (left to right, each its own run).

The model is a callable ``denoise(x_t (B, L), steps (B,), select (B, L), rows) -> logits (N, V)``
giving logits at the ``select`` positions (in ``select.nonzero()`` order); ``rows`` (R,) lists
the only rows that have such positions, so the trunk can skip every other row (None: all).
The method hook on h_t lives inside it (``DiffusionLM.forward(..., perturb=...)``).
Ancestral sampling asks only for the positions being revealed at this step, from the rows
that reveal something: each row runs the trunk at most once per reveal step.
All randomness comes from one ``torch.Generator``: same seed, same output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .schedules import Schedule, alpha_at_step, unmask_probability

Tensor = torch.Tensor
Denoise = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]
STRATEGIES = ("ancestral", "low_confidence")


@dataclass(frozen=True)
class SamplerConfig:
    num_steps: int = 100
    temperature: float = 1.0
    greedy: bool = False
    top_k: int = 0
    strategy: str = "ancestral"
    block_length: int = 0  # 0: the whole response is one block

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"sampler.num_steps must be >= 1, got {self.num_steps}")
        if self.temperature < 0:
            raise ValueError(f"sampler.temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"sampler.top_k must be >= 0, got {self.top_k}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"sampler.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.block_length < 0:
            raise ValueError(f"sampler.block_length must be >= 0, got {self.block_length}")


def draw_tokens(logits: Tensor, cfg: SamplerConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Token and its probability for each row of logits (N, V): greedy (argmax) when
    ``cfg.greedy`` or temperature 0, else a draw from softmax(logits / temperature) restricted
    to the ``top_k`` largest logits (0 = all). Returns (tokens (N,), confidence (N,))."""
    logits = logits.float()
    if cfg.top_k:
        kth = torch.topk(logits, min(cfg.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.greedy or cfg.temperature == 0:
        probs = torch.softmax(logits, dim=-1)
        tokens = probs.argmax(-1)
    else:
        probs = torch.softmax(logits / cfg.temperature, dim=-1)
        tokens = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
    return tokens, probs.gather(-1, tokens[:, None]).squeeze(-1)


def block_ids(generate_mask: Tensor, block_length: int) -> Tensor:
    """Block index of every generate position, counted left to right per row; -1 elsewhere.
    (B, L) bool -> (B, L) long."""
    order = torch.cumsum(generate_mask.long(), dim=1) - 1
    if block_length <= 0:
        return torch.where(generate_mask, torch.zeros_like(order), torch.full_like(order, -1))
    return torch.where(generate_mask, order // block_length, torch.full_like(order, -1))


def model_step(local_step: int, local_steps: int, num_steps: int) -> int:
    """Map step s of a block's own s_max-step run to the model's step grid 1..T."""
    return max(1, math.ceil(local_step * num_steps / local_steps))


def low_confidence_quota(masked_count: Tensor, total: Tensor, schedule: Schedule, s: int, steps: int) -> Tensor:
    """How many positions to reveal at step s so that round(n (1 - alpha_{s-1})) stay masked:
    quota = masked - round(n (1 - alpha_{s-1})), clipped at 0; every one at s = 1."""
    keep = torch.round(total.double() * (1.0 - alpha_at_step(schedule, s - 1, steps))).long()
    return (masked_count - keep).clamp(min=0)


@torch.no_grad()
def sample(
    denoise: Denoise,
    x: Tensor,
    generate_mask: Tensor,
    mask_token_id: int,
    schedule: Schedule,
    cfg: SamplerConfig,
    generator: torch.Generator,
) -> Tensor:
    """Generate the ``generate_mask`` (B, L) positions of ``x`` (B, L) and return x_0 (B, L).
    Other positions (instruction, padding) are kept as given."""
    x = torch.where(generate_mask, torch.full_like(x, mask_token_id), x)
    blocks = block_ids(generate_mask, cfg.block_length)
    n_blocks = int(blocks.max().item()) + 1 if generate_mask.any() else 0
    local_steps = max(1, cfg.num_steps // max(n_blocks, 1))
    for b in range(n_blocks):
        active = blocks == b
        for s in range(local_steps, 0, -1):
            still = active & (x == mask_token_id)
            if not still.any():
                break
            t = model_step(s, local_steps, cfg.num_steps)
            if cfg.strategy == "ancestral":
                x = _ancestral_step(denoise, x, still, s, local_steps, t, schedule, cfg, generator)
            else:
                x = _confidence_step(denoise, x, still, active, s, local_steps, t, schedule, cfg, generator)
    return x


def _ancestral_step(denoise, x, still, s, local_steps, t, schedule, cfg, generator) -> Tensor:
    """Reveal each masked position with probability p_s; the reveal draws come first and do
    not depend on the model, so the model runs only when something is revealed."""
    p = float(unmask_probability(schedule, s, local_steps))
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64).to(x.device)
    reveal = still & (u < p)
    if not reveal.any():
        return x
    steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    rows = reveal.any(1).nonzero().squeeze(1)
    logits = denoise(x, steps, reveal, rows)  # (N_reveal, V) in reveal.nonzero() order
    tokens, _ = draw_tokens(logits, cfg, generator)
    new = x.clone()
    new[reveal] = tokens
    return new


def _confidence_step(denoise, x, still, active, s, local_steps, t, schedule, cfg, generator) -> Tensor:
    """LLaDA low-confidence remasking: predict every masked position, keep the ``quota`` most
    confident predictions per row and leave the rest masked."""
    steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    logits = denoise(x, steps, still, still.any(1).nonzero().squeeze(1))
    tokens, conf = draw_tokens(logits, cfg, generator)
    score = torch.full(x.shape, float("-inf"), device=x.device)
    score[still] = conf
    proposal = x.clone()
    proposal[still] = tokens
    quota = low_confidence_quota(still.sum(1), active.sum(1), schedule, s, local_steps)
    ranks = torch.argsort(torch.argsort(score, dim=1, descending=True), dim=1)
    reveal = still & (ranks < quota[:, None])
    return torch.where(reveal, proposal, x)
