"""Base-model evaluation: the ELBO perplexity bound and masked-token accuracy at fixed rates.

Both read only the ``generate_mask`` positions (never [CLS]/[SEP]/padding).
"""

from __future__ import annotations

import math

import torch

from .backbone import DiffusionLM, unwrap_backbone
from .config import DiffusionConfig
from .diffusion import (
    elbo_weight,
    forward_mask,
    get_schedule,
    mask_at_rate,
    mask_probability,
    sample_steps,
    token_nll,
)
from .diffusion.schedules import time_for_mask_rate
from .prompt_cache import prompt_layout


def _batches(data, batch_size: int):
    for start in range(0, len(data), batch_size):
        rows = [data[i] for i in range(start, min(start + batch_size, len(data)))]
        yield {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def _forward(model, batch, x_t, steps, masked):
    """Logits at ``masked``; rows that carry an ``instruction_mask`` (a clean instruction prefix,
    see ``forgetting.py``) pass it on, so a method conditioned on the instruction sees it
    (a bare ``DiffusionLM`` ignores it). A model trained with prefix prompt attention gets each
    row's prompt length (``prompt_cache.prompt_layout``)."""
    device = x_t.device
    extra = {"instruction_mask": batch["instruction_mask"].to(device).bool()} if "instruction_mask" in batch else {}
    attn = batch["attention_mask"].to(device)
    if "generate_mask" in batch:
        gen = batch["generate_mask"].to(device).bool()
    else:  # plain text: everything after the start token is text (the prompt is the start token)
        gen = attn.bool().clone()
        gen[:, 0] = False
    with prompt_layout(unwrap_backbone(model), gen, attn):  # a model trained with prefix prompt attention
        return model(x_t, attn, steps, select=masked, **extra)


@torch.no_grad()
def nelbo(
    model: DiffusionLM, data, diffusion: DiffusionConfig, batch_size: int = 64, seed: int = 0, passes: int = 1
) -> dict[str, float]:
    """Monte-Carlo estimate of the T-step negative ELBO per token (nats), an upper bound on
    -log p(x_0) / n, and its perplexity bound exp(NELBO). Each chunk gets its own step s,
    stratified over {1..T} across the data set (unbiased, low variance)."""
    model.eval()
    schedule, T = get_schedule(diffusion.schedule), diffusion.num_steps
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for _ in range(passes):
        steps_all = sample_steps(len(data), T, gen, stratified=True)
        steps_all = steps_all[torch.randperm(len(data), generator=gen)]
        for i, batch in enumerate(_batches(data, batch_size)):
            x0 = batch["input_ids"].to(device)
            gen_mask = batch["generate_mask"].to(device).bool()
            steps = steps_all[i * batch_size : i * batch_size + x0.shape[0]].to(device)
            x_t, masked = forward_mask(x0, gen_mask, mask_probability(schedule, steps, T), unwrap_backbone(model).mask_token_id, gen)
            logits = _forward(model, batch, x_t, steps, masked)
            w = elbo_weight(schedule, steps, T).to(device)
            total += float((w[masked.nonzero()[:, 0]] * token_nll(logits, x0[masked]).double()).sum())
            tokens += int(gen_mask.sum())
    per_token = total / max(tokens, 1)
    return {"nelbo_per_token": per_token, "ppl_bound": math.exp(per_token), "tokens": tokens // passes}


@torch.no_grad()
def masked_accuracy(
    model: DiffusionLM, data, rate: float, diffusion: DiffusionConfig, batch_size: int = 64, seed: int = 0
) -> dict[str, float]:
    """Fraction of masked tokens predicted exactly (argmax) when each generate position is
    masked with probability ``rate``; also the mean cross-entropy of those tokens."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    step = int(time_for_mask_rate(get_schedule(diffusion.schedule), rate, diffusion.num_steps))
    correct, count, nll = 0, 0, 0.0
    for batch in _batches(data, batch_size):
        x0 = batch["input_ids"].to(device)
        x_t, masked = mask_at_rate(x0, batch["generate_mask"].to(device).bool(), rate, unwrap_backbone(model).mask_token_id, gen)
        steps = torch.full((x0.shape[0],), step, dtype=torch.long, device=device)
        logits = _forward(model, batch, x_t, steps, masked)
        target = x0[masked]
        correct += int((logits.argmax(-1) == target).sum())
        nll += float(token_nll(logits, target).sum())
        count += int(masked.sum())
    return {"accuracy": correct / max(count, 1), "cross_entropy": nll / max(count, 1), "masked_tokens": count}


def evaluate_base(
    model: DiffusionLM, data, diffusion: DiffusionConfig, rates=(0.15, 0.5, 0.9), batch_size: int = 64, seed: int = 0
) -> dict[str, float]:
    """NELBO / perplexity bound plus accuracy at each masking rate, flat keys."""
    out = {k: v for k, v in nelbo(model, data, diffusion, batch_size, seed).items()}
    for rate in rates:
        acc = masked_accuracy(model, data, rate, diffusion, batch_size, seed)
        out[f"acc@{int(round(rate * 100))}"] = acc["accuracy"]
        out[f"ce@{int(round(rate * 100))}"] = acc["cross_entropy"]
    return out
