"""Generation through the reverse sampler, and generation accuracy for classification.

Generation accuracy: the response is generated from all-[MASK] by the sampler (with the
method's hook active at every step); a row is correct only if every response token equals
the gold label word's tokens (exact match; a non-label prediction is wrong, no fallback).
Classification-head accuracy (models with a ``cls_head``) comes from the same reverse run:
the head reads the perturbed hidden state of the step that decoded the first response
position (``methods/head.py``); no extra trunk pass.

Prompt caching (``SamplerConfig.prompt_cache`` / ``prompt_attention``): ``generate`` checks the
backbone and method (``prompt_cache.check_support``: one-line ``ConfigError``), then routes the
trunk through a per-batch ``prompt_cache.PromptCache`` for the reverse run, telling it the rows
of every call; the method's hook still runs on the returned (B, L, D) hidden states. A model
trained with prefix prompt attention (``DiffusionLM.prompt_attention``) is always routed so, with
the attention ``cfg`` names (``GenerationOptions.sampler`` resolves it: by default the model's own).

Precision (``SamplerConfig.precision``): ``bf16`` runs every model call of the reverse run under
``torch.autocast`` with bfloat16 (matrix products in bf16, weights cast once per run by autocast's
cache; layer norms, softmax and the sampler's probabilities stay fp32; the saved weights are
untouched). Outputs can differ from fp32 where two candidates are nearly tied, so its effect on
a task's metric is measured like any other decoding option (``reports/generation-speed.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .backbone import Perturb, unwrap_backbone
from .config import require
from .data.encoding import pad_collate, response_tokens
from .diffusion import get_schedule
from .diffusion.sampler import (
    PARALLEL,
    PRECISION,
    PROMPT_ATTENTION,
    PROMPT_CACHE,
    REMASKING,
    SamplerConfig,
    sample,
)
from .methods.head import anchor_mask, head_of, head_predictions
from .prompt_cache import PromptCache, check_support, installed, prompt_layout


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    cfg: SamplerConfig,
    generator: torch.Generator,
    perturb: Perturb | None = None,
    record_anchor: bool = False,
    cache_stats: dict[str, int] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fill the ``generate_mask`` positions of ``batch`` by reverse diffusion: (B, L) ids.
    ``model`` is a ``DiffusionLM`` or a method model; a method's own perturbation runs at every
    reverse step with that step's t (``perturb`` adds an extra hook on a plain backbone).
    ``record_anchor``: also return the hidden state (B, D) at each row's first response
    position from the last step that asked for it (the step that decoded it).
    ``cache_stats``: with prompt caching on, the cache's pass counts are added to it."""
    model.eval()
    backbone = unwrap_backbone(model)
    device = next(model.parameters()).device
    per_row = {"attention_mask": batch["attention_mask"].to(device)}
    if batch.get("instruction_mask") is not None:
        per_row["instruction_mask"] = batch["instruction_mask"].to(device).bool()
    if batch.get("task_ids") is not None:  # multi-task serving: each row's own adapter
        per_row["task_ids"] = batch["task_ids"].to(device)
    gen_mask = batch["generate_mask"].to(device).bool()
    extra = {"perturb": perturb} if perturb is not None else {}
    anchors = anchor_mask(gen_mask)
    recorded = torch.zeros(gen_mask.shape[0], backbone.hidden_size, device=device) if record_anchor else None
    cache = None
    if cfg.prompt_cache != "none" or cfg.prompt_attention != "full" or backbone.prompt_attention == "prefix":
        check_support(model, backbone, cfg.prompt_cache, cfg.prompt_attention)
        cache = PromptCache(backbone, gen_mask, per_row["attention_mask"], cfg.prompt_cache, cfg.prompt_attention)

    def denoise(x_t, steps, select, rows=None):
        full_select, kw = select, per_row
        if cache is not None:
            cache.announce(rows if rows is not None and rows.numel() < x_t.shape[0] else None, x_t, steps)
        if rows is not None and rows.numel() < x_t.shape[0]:  # only rows that need logits
            x_t, steps, select = x_t[rows], steps[rows], select[rows]
            kw = {k: v[rows] for k, v in per_row.items()}
        kw = dict(kw)
        attn = kw.pop("attention_mask")
        if recorded is None:
            return model(x_t, attn, steps, select=select, **kw, **extra)
        logits, hidden = model(x_t, attn, steps, select=select, return_hidden=True, **kw, **extra)
        at_anchor = anchors[full_select]  # (N,) in full_select.nonzero() order
        recorded[full_select.nonzero()[at_anchor][:, 0]] = hidden[at_anchor].float()
        return logits

    if cache is not None:
        denoise.new_block = cache.new_block
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    with installed(backbone, cache), autocast:
        out = sample(denoise, batch["input_ids"].to(device), gen_mask, backbone.mask_token_id,
                     get_schedule(backbone.diffusion.schedule), cfg, generator)
    if cache is not None and cache_stats is not None:
        for key, value in cache.stats.items():
            cache_stats[key] = cache_stats.get(key, 0) + value
    return (out, recorded) if record_anchor else out


@dataclass
class GenerationOptions:
    """Sampler options as the CLI and configs give them (``--set sampling.remasking=margin``).

    ``remasking``: random (the exact ancestral sampler: each step reveals a uniform random
    subset, event-driven), low_confidence (LLaDA) or margin (top-2 margin). ``num_steps`` 0:
    the base's T. ``response_length`` 0: the task's (or the adapter's) response budget.

    ``parallel``: none (the remasking's step schedule), threshold (each model call reveals every
    masked position of the active block whose confidence exceeds ``threshold``, at least one)
    or fixed (``tokens_per_call`` positions per call); with either, remasking only picks the
    confidence (margin: the top-2 gap; otherwise the drawn token's probability) and T is the
    step grid the model's t is read on (``diffusion.sampler.sample_parallel``).

    ``prompt_cache``: none, exact (reuse the prompt's keys/values at every call; needs
    ``prompt_attention="prefix"``, where prompt queries see only prompt keys) or approximate
    (refresh them at each semi-AR block's first call; stale in between). ``prompt_cache.py``.

    ``prompt_attention``: full, prefix, or "" (default): the model's own, as trained and recorded
    with its adapter (``finetune --set prompt_attention=prefix``); on a bare base (nothing
    recorded) full, or prefix with ``exact``. ``exact`` on a model trained with full attention needs
    an explicit ``prefix`` (``resolved_attention``).

    ``precision``: fp32, or bf16 (the model calls under bfloat16 autocast; ``generate``).

    ``end_bias``: added to the end token's logit at every draw (free text only; classification
    has no end token): negative values make a response stop later. A model that predicts the end
    token too readily (weakly trained, most of its training positions being end/fill tokens)
    otherwise writes empty responses; choose the value on validation rows, never the reported ones."""

    num_steps: int = 0
    remasking: str = "random"
    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    block_length: int = 0
    parallel: str = "none"
    threshold: float = 0.9
    tokens_per_call: int = 2
    prompt_cache: str = "none"
    prompt_attention: str = ""  # "": the model's own (resolved_attention)
    response_length: int = 0
    precision: str = "fp32"
    end_bias: float = 0.0
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.num_steps >= 0, "num_steps", f"must be >= 0, got {self.num_steps}")
        require(self.remasking in REMASKING, "remasking", f"must be one of {sorted(REMASKING)}, got {self.remasking!r}")
        require(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        require(self.top_k >= 0, "top_k", f"must be >= 0, got {self.top_k}")
        require(self.block_length >= 0, "block_length", f"must be >= 0, got {self.block_length}")
        require(self.parallel in PARALLEL, "parallel", f"must be one of {list(PARALLEL)}, got {self.parallel!r}")
        require(isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0, "threshold",
                f"must be a probability in [0, 1], got {self.threshold!r}")
        require(isinstance(self.tokens_per_call, int) and self.tokens_per_call >= 1, "tokens_per_call",
                f"must be an integer >= 1, got {self.tokens_per_call!r}")
        require(self.prompt_cache in PROMPT_CACHE, "prompt_cache",
                f"must be one of {list(PROMPT_CACHE)}, got {self.prompt_cache!r}")
        require(self.prompt_attention in ("", *PROMPT_ATTENTION), "prompt_attention",
                f"must be one of {list(PROMPT_ATTENTION)} (or empty: the model's own), got {self.prompt_attention!r}")
        require(self.prompt_cache != "exact" or self.prompt_attention != "full", "prompt_cache",
                "'exact' needs prompt_attention=prefix (under full attention the prompt sees the response)")
        require(self.precision in PRECISION, "precision", f"must be one of {list(PRECISION)}, got {self.precision!r}")
        require(self.response_length >= 0, "response_length", f"must be >= 0, got {self.response_length}")
        require(isinstance(self.end_bias, (int, float)) and math.isfinite(self.end_bias), "end_bias",
                f"must be a finite number, got {self.end_bias!r}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")

    def resolved_attention(self, model_attention: str = "") -> str:
        """The prompt attention to sample with: the one given, else ``model_attention`` (the
        model's own, ``DiffusionLM.prompt_attention``; "" a bare base, which records none). With
        ``exact`` caching and none given: prefix, refused on a model trained with full attention."""
        if self.prompt_attention:
            return self.prompt_attention
        if self.prompt_cache == "exact":
            require(model_attention != "full", "prompt_cache",
                    "'exact' needs prefix prompt attention, but this model is trained with full attention (its "
                    "prompt attends to the response), so prefix attention would be another function than the "
                    "trained one: give prompt_attention=prefix (--prompt-attention prefix) to accept that, use "
                    "approximate caching, or train with prompt_attention=prefix")
            return "prefix"
        return model_attention or "full"

    def sampler(self, default_steps: int, model_attention: str = "") -> SamplerConfig:
        """The ``SamplerConfig`` for a model with ``default_steps`` T and prompt attention
        ``model_attention`` (``resolved_attention``)."""
        return SamplerConfig(num_steps=self.num_steps or default_steps, temperature=self.temperature,
                             greedy=self.greedy, top_k=self.top_k, strategy=REMASKING[self.remasking],
                             block_length=self.block_length, parallel=self.parallel,
                             threshold=float(self.threshold), tokens_per_call=self.tokens_per_call,
                             prompt_cache=self.prompt_cache, precision=self.precision,
                             end_bias=float(self.end_bias), prompt_attention=self.resolved_attention(model_attention))


@dataclass
class ReverseRun:
    """What one reverse-diffusion pass over a data set produced, row by row (data order)."""

    regions: list[list[int]]  # every generate position's token, left to right
    head_predictions: list[int] | None  # the classification head's label per row, if any
    seconds: float


@torch.no_grad()
def reverse_run(model: torch.nn.Module, data, cfg: SamplerConfig | None = None, batch_size: int = 32,
                seed: int = 0, resume=None, section: str = "reverse_run") -> ReverseRun:
    """Generate every row's response region from all-[MASK] (the method active at every
    step); with a classification head and labelled rows, also read the head from the same run.
    ``resume`` (a ``utils.resume.ResumeFile`` keyed by everything the run depends on): each
    finished batch is kept under ``section`` with the generator's state after it, so that an
    interrupted run goes on from its next batch and gives the same outputs as an uninterrupted one."""
    import time

    backbone = unwrap_backbone(model)
    cfg = cfg or SamplerConfig(num_steps=backbone.diffusion.num_steps, greedy=True,
                               prompt_attention=backbone.prompt_attention or "full")
    head = head_of(model) if len(data) and "label" in data[0] else None
    if cfg.end_bias and getattr(data, "end_id", None) is not None:
        cfg = replace(cfg, end_token_id=data.end_id)
    gen = torch.Generator().manual_seed(seed)
    regions: list[list[int]] = []
    heads: list[int] = []
    seconds = 0.0
    for lo in range(0, len(data), batch_size):
        if resume is not None and (kept := resume.get(section, str(lo))) is not None:
            regions, heads, seconds = regions + kept["regions"], heads + kept["heads"], seconds + kept["seconds"]
            gen.set_state(torch.tensor(bytearray.fromhex(kept["generator"]), dtype=torch.uint8))
            continue
        start = time.perf_counter()
        batch = pad_collate([data[i] for i in range(lo, min(lo + batch_size, len(data)))], backbone.pad_token_id)
        batch_heads: list[int] = []
        if head is None:
            out = generate(model, batch, cfg, gen).cpu()
        else:
            out, anchor_hidden = generate(model, batch, cfg, gen, record_anchor=True)
            out = out.cpu()
            batch_heads = head_predictions(head, anchor_hidden).cpu().tolist()
        batch_regions = response_tokens(out, batch["generate_mask"], None)
        elapsed = time.perf_counter() - start
        regions, heads, seconds = regions + batch_regions, heads + batch_heads, seconds + elapsed
        if resume is not None:
            resume.put(section, str(lo), {"regions": batch_regions, "heads": batch_heads, "seconds": elapsed,
                                          "generator": bytes(gen.get_state().tolist()).hex()})
    return ReverseRun(regions, heads if head is not None else None, seconds)


def generation_accuracy(
    model: torch.nn.Module, data, cfg: SamplerConfig | None = None, batch_size: int = 32, seed: int = 0,
    run: ReverseRun | None = None,
) -> dict[str, float]:
    """Exact-match accuracy of generated responses over ``data`` rows (with ``input_ids``
    holding the gold response at ``generate_mask``): a row is right only if its whole response
    region equals the gold one. Also the fraction of predictions that are a valid label word
    at all, and, for a model with a classification head and rows with a ``label``, the head's
    accuracy from the same reverse run (``head_accuracy``). ``run``: score an existing pass."""
    run = run or reverse_run(model, data, cfg, batch_size, seed)
    label_tokens = set(getattr(data, "label_token_ids", {}).values())
    correct = valid = head_correct = 0
    for i, pred in enumerate(run.regions):
        row = data[i]
        gold = row["input_ids"][row["generate_mask"].bool()].tolist()
        correct += pred == gold
        valid += bool(label_tokens) and all(t in label_tokens for t in pred)
        if run.head_predictions is not None:
            head_correct += run.head_predictions[i] == int(row["label"])
    total = len(run.regions)
    result = {"accuracy": correct / max(total, 1), "valid_label_rate": valid / max(total, 1), "examples": total}
    if run.head_predictions is not None:
        result["head_accuracy"] = head_correct / max(total, 1)
    return result


@torch.no_grad()
def denoising_accuracy(model: torch.nn.Module, data, batch_size: int = 32, seed: int = 0) -> dict[str, float]:
    """Token-level denoising accuracy, as in training: each row gets s ~ U{1..T}, its response
    tokens are masked with probability 1 - alpha_s, and the fraction of masked response tokens
    whose argmax prediction is right is reported (never special tokens, never padding)."""
    from .diffusion import forward_mask, mask_probability, sample_steps

    backbone = unwrap_backbone(model)
    model.eval()
    schedule, T = get_schedule(backbone.diffusion.schedule), backbone.diffusion.num_steps
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    correct = total = 0
    for start in range(0, len(data), batch_size):
        batch = pad_collate([data[i] for i in range(start, min(start + batch_size, len(data)))], backbone.pad_token_id)
        x0, gmask = batch["input_ids"].to(device), batch["generate_mask"].to(device).bool()
        steps = sample_steps(x0.shape[0], T, gen).to(device)
        x_t, masked = forward_mask(x0, gmask, mask_probability(schedule, steps, T), backbone.mask_token_id, gen)
        instr, attn = batch.get("instruction_mask"), batch["attention_mask"].to(device)
        with prompt_layout(backbone, gmask, attn):  # the model's own prompt attention, as in training
            logits = model(x_t, attn, steps, select=masked,
                           instruction_mask=None if instr is None else instr.to(device).bool(),
                           **({"task_ids": batch["task_ids"].to(device)} if "task_ids" in batch else {}))
        correct += int((logits.argmax(-1) == x0[masked]).sum())
        total += int(masked.sum())
    return {"accuracy": correct / max(total, 1), "masked_tokens": total}
