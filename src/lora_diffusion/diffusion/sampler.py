"""Reverse sampler of the absorbing process (the paper's Algorithm 1, masked diffusion form).

Start with every response position set to [MASK]; for s = T..1 reveal each still-masked
position with probability p_s = (alpha_{s-1} - alpha_s) / (1 - alpha_s), drawing its token
from the model's prediction at step s. p_1 = 1, so nothing stays masked. Alternatives:
LLaDA's low-confidence remasking (reveal the most confident predictions, as many per step
as the schedule expects), margin remasking (the same, ranked by the margin p_top1 - p_top2
between the two most probable tokens, as in Dream / Kim et al. 2025) and semi-autoregressive
blocks (left to right, each its own run). "random" remasking is the ancestral sampler: the
positions revealed at each step are a uniform random subset.

The model is a callable ``denoise(x_t (B, L), steps (B,), select (B, L), rows) -> logits (N, V)``
giving logits at the ``select`` positions (in ``select.nonzero()`` order); ``rows`` (R,) lists
the only rows that have such positions, so the trunk can skip every other row (None: all).
The method hook on h_t lives inside it (``DiffusionLM.forward(..., perturb=...)``).

Exact event-driven ancestral sampling (the default): in the absorbing process the step at
which a position unmasks does not depend on the model, so every position's reveal step tau
and the uniform u that picks its token are drawn first; the model then runs only at the
distinct reveal steps, only for the rows that reveal something there, only at the revealed
positions (with that step's own t). The step-by-step sampler (``event_driven=False``, the
textbook loop: every row, every masked position, every one of the T steps) draws the same
tau and u, so both give identical samples; only the number of trunk passes differs.
All randomness comes from one ``torch.Generator``: same seed, same output.

Parallel decoding (``parallel``; ``sample_parallel``): instead of a step schedule, each model
call reveals a data-dependent number of positions of the active block: ``threshold`` (Fast-dLLM)
reveals every still-masked position whose confidence exceeds ``threshold``, and at least the
most confident one; ``fixed`` reveals the ``tokens_per_call`` most confident. Confidence is the
drawn token's probability, or the top-2 margin with the margin strategy. Each call is one pass
through ``denoise``, so the method's hook runs at every call.

Prompt caching (``prompt_cache``, ``prompt_attention``; ``lora_diffusion.prompt_cache``): the
sampler only announces each semi-AR block to ``denoise.new_block(b)`` when ``denoise`` has it
(an approximate cache is refreshed there); the caching itself happens inside ``denoise``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .schedules import Schedule, alpha_at_step

Tensor = torch.Tensor
Denoise = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]
STRATEGIES = ("ancestral", "low_confidence", "margin")
PARALLEL = ("none", "threshold", "fixed")
PROMPT_CACHE = ("none", "exact", "approximate")
PROMPT_ATTENTION = ("full", "prefix")
PRECISION = ("fp32", "bf16")
REMASKING = {"random": "ancestral", "low_confidence": "low_confidence", "margin": "margin"}  # CLI names


@dataclass(frozen=True)
class SamplerConfig:
    num_steps: int = 100
    temperature: float = 1.0
    greedy: bool = False
    top_k: int = 0
    strategy: str = "ancestral"
    block_length: int = 0  # 0: the whole response is one block
    event_driven: bool = True  # ancestral: run the model only at steps where something unmasks
    parallel: str = "none"  # none (the strategy's step schedule), threshold or fixed (sample_parallel)
    threshold: float = 0.9  # parallel=threshold: reveal every position whose confidence exceeds it
    tokens_per_call: int = 2  # parallel=fixed: reveal this many positions per model call
    prompt_cache: str = "none"  # none, exact (needs prompt_attention=prefix) or approximate (prompt_cache.py)
    prompt_attention: str = "full"  # full, or prefix: prompt queries see only prompt keys
    precision: str = "fp32"  # fp32, or bf16: the model calls under bf16 autocast (``generation.generate``)
    end_bias: float = 0.0  # added to the end token's logit at every draw (< 0: stop later)
    end_token_id: int = -1  # the end token (set from the data by ``generation.reverse_run``); -1: none

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
        if self.parallel not in PARALLEL:
            raise ValueError(f"sampler.parallel must be one of {PARALLEL}, got {self.parallel!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"sampler.threshold must be in [0, 1], got {self.threshold}")
        if self.tokens_per_call < 1:
            raise ValueError(f"sampler.tokens_per_call must be >= 1, got {self.tokens_per_call}")
        if self.prompt_cache not in PROMPT_CACHE:
            raise ValueError(f"sampler.prompt_cache must be one of {PROMPT_CACHE}, got {self.prompt_cache!r}")
        if self.prompt_attention not in PROMPT_ATTENTION:
            raise ValueError(f"sampler.prompt_attention must be one of {PROMPT_ATTENTION}, got {self.prompt_attention!r}")
        if self.precision not in PRECISION:
            raise ValueError(f"sampler.precision must be one of {PRECISION}, got {self.precision!r}")
        if not math.isfinite(self.end_bias):
            raise ValueError(f"sampler.end_bias must be finite, got {self.end_bias}")
        if self.prompt_cache == "exact" and self.prompt_attention != "prefix":
            raise ValueError("sampler.prompt_cache 'exact' needs prompt_attention='prefix' "
                             "(under full attention the prompt sees the response)")


def draw_tokens(logits: Tensor, cfg: SamplerConfig, generator: torch.Generator | None = None,
                u: Tensor | None = None, margin: bool = False) -> tuple[Tensor, Tensor]:
    """Token and its probability for each row of logits (N, V): greedy (argmax) when
    ``cfg.greedy`` or temperature 0, else a draw from softmax(logits / temperature) restricted
    to the ``top_k`` largest logits (0 = all): by inverse CDF from the given uniforms ``u`` (N,),
    token = min{v : sum_{w <= v} p_w > u}, or else from ``generator``.
    Returns (tokens (N,), confidence (N,)): the drawn token's probability, or with ``margin``
    the gap p_(1) - p_(2) between the two largest probabilities. ``cfg.end_bias`` b is added to
    the end token's logit first: its probability becomes p_end e^b / (p_end e^b + 1 - p_end), the
    penalty on end tokens Dream applies (and the cure for the flood of early end tokens LLaDA
    reports for its instruct model, Appendix B.3)."""
    logits = logits.float()
    if cfg.end_bias and cfg.end_token_id >= 0:
        logits = logits.clone()
        logits[:, cfg.end_token_id] += cfg.end_bias
    if cfg.top_k:
        kth = torch.topk(logits, min(cfg.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.greedy or cfg.temperature == 0:
        probs = torch.softmax(logits, dim=-1)
        tokens = probs.argmax(-1)
    else:
        probs = torch.softmax(logits / cfg.temperature, dim=-1)
        if u is not None:
            cdf = torch.cumsum(probs.double(), dim=-1)
            tokens = torch.searchsorted(cdf, (u.to(cdf) * cdf[:, -1])[:, None], right=True).squeeze(-1)
            tokens = tokens.clamp(max=logits.shape[-1] - 1)
        else:
            tokens = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
    if margin:
        top2 = torch.topk(probs, min(2, probs.shape[-1]), dim=-1).values
        gap = top2[:, 0] - (top2[:, 1] if top2.shape[-1] > 1 else 0.0)
        return tokens, gap
    return tokens, probs.gather(-1, tokens[:, None]).squeeze(-1)


def reveal_steps(u: Tensor, schedule: Schedule, num_steps: int) -> Tensor:
    """Step at which each position unmasks, from uniforms u (B, L) in [0, 1).
    With m_s = 1 - alpha_s (m_0 = 0, increasing), a position is still masked at step s iff
    u m_T < m_s, so tau = min{s : m_s > u m_T} in 1..T, and P(tau = s | tau <= s) =
    (m_s - m_{s-1}) / m_s = p_s: the per-step Bernoulli reveals of the reverse process. (B, L) long."""
    m = 1.0 - alpha_at_step(schedule, torch.arange(num_steps + 1), num_steps).to(u.device)
    return torch.searchsorted(m, (u.double() * m[-1]).contiguous(), right=True).clamp(1, num_steps)


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
    if cfg.parallel != "none":
        return sample_parallel(denoise, x, generate_mask, mask_token_id, schedule, cfg, generator)
    x = torch.where(generate_mask, torch.full_like(x, mask_token_id), x)
    new_block = getattr(denoise, "new_block", lambda b: None)  # a prompt cache's refresh point
    denoise = _never_mask(denoise, mask_token_id)
    blocks = block_ids(generate_mask, cfg.block_length)
    n_blocks = int(blocks.max().item()) + 1 if generate_mask.any() else 0
    local_steps = max(1, cfg.num_steps // max(n_blocks, 1))
    if cfg.strategy == "ancestral":  # model-independent randomness, drawn first
        tau = reveal_steps(torch.rand(x.shape, generator=generator, dtype=torch.float64), schedule, local_steps)
        u_token = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    for b in range(n_blocks):
        new_block(b)
        active = blocks == b
        if cfg.strategy == "ancestral":
            plan = sorted(set(tau[active].tolist()), reverse=True) if cfg.event_driven else range(local_steps, 0, -1)
            for s in plan:
                t = model_step(s, local_steps, cfg.num_steps)
                x = _ancestral_step(denoise, x, active & (tau.to(x.device) == s), active & (x == mask_token_id),
                                    t, cfg, u_token.to(x.device))
            continue
        for s in range(local_steps, 0, -1):
            still = active & (x == mask_token_id)
            if not still.any():
                break
            t = model_step(s, local_steps, cfg.num_steps)
            x = _confidence_step(denoise, x, still, active, s, local_steps, t, schedule, cfg, generator)
    return x


def masked_fraction_step(still: Tensor, total: Tensor, schedule: Schedule, num_steps: int) -> Tensor:
    """The model step t (1..T) for a row whose active block has ``still`` (B,) of its ``total``
    (B,) positions masked: the step at which the forward process has masked that fraction,
    with m_s = 1 - alpha_s (increasing, m_0 = 0) normalised by m_T as in ``reveal_steps``:

        t = min{s in 1..T : m_s / m_T >= still / total}

    so a fully masked block gets t = T and t falls towards 1 as the block fills. (B,) long.
    Linear schedule, T = n = total: t = still, the step the one-reveal-per-step low-confidence
    sampler would use."""
    m = 1.0 - alpha_at_step(schedule, torch.arange(num_steps + 1), num_steps).double().to(still.device)
    frac = still.double() / total.clamp(min=1).double()
    # a small tolerance so that a fraction equal to m_s / m_T (up to rounding) maps to s itself
    return torch.searchsorted(m / m[-1], (frac - 1e-9).contiguous(), right=False).clamp(1, num_steps)


@torch.no_grad()
def sample_parallel(
    denoise: Denoise,
    x: Tensor,
    generate_mask: Tensor,
    mask_token_id: int,
    schedule: Schedule,
    cfg: SamplerConfig,
    generator: torch.Generator,
) -> Tensor:
    """Parallel decoding: blocks (``block_length``, 0 = one block) are filled left to right;
    within a block, every model call predicts all still-masked positions of the block (only the
    rows that have some) and reveals, per row,

    - ``parallel="threshold"``: every position whose confidence exceeds ``cfg.threshold``,
      and always the most confident one (so threshold 1.0 reveals exactly one per call);
    - ``parallel="fixed"``: the ``cfg.tokens_per_call`` = K most confident (all if fewer
      remain), so a block of n positions takes ceil(n / K) calls.

    Confidence is the drawn token's probability (greedy: the top probability), or the top-2
    margin p_(1) - p_(2) with ``strategy="margin"``; ties go to the leftmost position. The step
    passed to the model is ``masked_fraction_step`` of the row's active block:
    t = min{s : (1 - alpha_s) / (1 - alpha_T) >= masked / block size}, on the T =
    ``cfg.num_steps`` grid (rows that fill at different rates get their own t in one call); a
    fully masked block gets t = T. With the linear schedule, one reveal per call and T equal to
    the response length (or the block count times the block length), this is the low-confidence
    sampler with T steps (same reveals, same t, same draws from ``generator``; exact ties in
    confidence aside). Trunk passes: one per call, i.e. per block the most any row needs."""
    x = torch.where(generate_mask, torch.full_like(x, mask_token_id), x)
    new_block = getattr(denoise, "new_block", lambda b: None)  # a prompt cache's refresh point
    denoise = _never_mask(denoise, mask_token_id)
    blocks = block_ids(generate_mask, cfg.block_length)
    n_blocks = int(blocks.max().item()) + 1 if generate_mask.any() else 0
    margin = cfg.strategy == "margin"
    for b in range(n_blocks):
        new_block(b)
        active = blocks == b
        size = active.sum(1)
        while True:
            still = active & (x == mask_token_id)
            if not still.any():
                break
            steps = masked_fraction_step(still.sum(1), size, schedule, cfg.num_steps)
            logits = denoise(x, steps, still, still.any(1).nonzero().squeeze(1))
            tokens, conf = draw_tokens(logits, cfg, generator, margin=margin)
            x = torch.where(_parallel_reveal(still, conf, cfg), _scatter(x, still, tokens), x)
    return x


def _scatter(x: Tensor, where: Tensor, values: Tensor) -> Tensor:
    out = x.clone()
    out[where] = values
    return out


def _parallel_reveal(still: Tensor, conf: Tensor, cfg: SamplerConfig) -> Tensor:
    """Which ``still`` (B, L) positions to reveal, given the confidence (N,) of each in
    ``still.nonzero()`` order: ranks per row by descending confidence (stable: ties leftmost)."""
    score = torch.full(still.shape, float("-inf"), device=still.device, dtype=torch.float64)
    score[still] = conf.double()
    ranks = torch.argsort(torch.argsort(-score, dim=1, stable=True), dim=1, stable=True)
    if cfg.parallel == "fixed":
        return still & (ranks < cfg.tokens_per_call)
    return still & ((ranks == 0) | (score > cfg.threshold))


def _never_mask(denoise: Denoise, mask_token_id: int) -> Denoise:
    """A revealed position is final, so [MASK] itself is never a candidate token (MDLM's
    zero-masking-probability rule): its logit is set to -inf."""

    def wrapped(x, steps, select, rows=None):
        logits = denoise(x, steps, select, rows)
        return logits.index_fill(-1, torch.tensor([mask_token_id], device=logits.device), float("-inf"))

    return wrapped


def _ancestral_step(denoise, x, reveal, still, t, cfg, u_token) -> Tensor:
    """Reveal the ``reveal`` positions (those whose tau is this step). Event-driven: the model
    sees only the revealing rows and is asked only for the revealed positions; step by step:
    every row, every still-masked position (the logits of the others are thrown away)."""
    if not still.any():
        return x
    steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    if cfg.event_driven:
        logits = denoise(x, steps, reveal, reveal.any(1).nonzero().squeeze(1))
    else:
        logits = denoise(x, steps, still, None)[reveal[still]]
    if not reveal.any():
        return x
    tokens, _ = draw_tokens(logits, cfg, u=u_token[reveal])
    new = x.clone()
    new[reveal] = tokens
    return new


def _confidence_step(denoise, x, still, active, s, local_steps, t, schedule, cfg, generator) -> Tensor:
    """LLaDA low-confidence remasking: predict every masked position, keep the ``quota`` most
    confident predictions per row (by probability, or by top-2 margin) and leave the rest masked."""
    steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    logits = denoise(x, steps, still, still.any(1).nonzero().squeeze(1))
    tokens, conf = draw_tokens(logits, cfg, generator, margin=cfg.strategy == "margin")
    score = torch.full(x.shape, float("-inf"), device=x.device)
    score[still] = conf
    proposal = x.clone()
    proposal[still] = tokens
    quota = low_confidence_quota(still.sum(1), active.sum(1), schedule, s, local_steps)
    ranks = torch.argsort(torch.argsort(score, dim=1, descending=True), dim=1)
    reveal = still & (ranks < quota[:, None])
    return torch.where(reveal, proposal, x)
