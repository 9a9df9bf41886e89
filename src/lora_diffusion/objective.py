"""The denoising objective shared by pretraining and every fine-tuning method.

batch (clean x_0, masks) -> draw s ~ U{1..T} -> masked x_t ~ q(x_t | x_0) -> backbone
(+ method hook) -> logits at masked positions only -> L_simple or the ELBO.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .backbone import DiffusionLM, Perturb
from .config import DiffusionConfig
from .diffusion import diffusion_loss, forward_mask, get_schedule, mask_probability, sample_steps

Tensor = torch.Tensor
PerturbFactory = Callable[[torch.nn.Module, dict[str, Tensor]], Perturb | None]


def _backbone(model: torch.nn.Module) -> DiffusionLM:
    inner = getattr(model, "module", model)  # DDP wraps the model
    return inner if isinstance(inner, DiffusionLM) else inner.backbone


class DiffusionObjective:
    """Callable ``(model, batch, generator) -> (loss, logs)`` for the trainer.

    ``batch`` holds ``input_ids`` (B, L) = x_0, ``attention_mask`` (B, L) and
    ``generate_mask`` (B, L) (response positions; only they are masked and scored).
    ``perturb_factory(model, batch)`` lets a method supply the hidden-state hook."""

    def __init__(self, diffusion: DiffusionConfig, perturb_factory: PerturbFactory | None = None):
        self.diffusion = diffusion
        self.schedule = get_schedule(diffusion.schedule)
        self.perturb_factory = perturb_factory

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        backbone = _backbone(model)
        x0, attn, gen = batch["input_ids"], batch["attention_mask"], batch["generate_mask"].bool()
        T = self.diffusion.num_steps
        steps = sample_steps(x0.shape[0], T, generator).to(x0.device)
        x_t, masked = forward_mask(
            x0, gen, mask_probability(self.schedule, steps, T), backbone.mask_token_id, generator
        )
        perturb = self.perturb_factory(model, batch) if self.perturb_factory else None
        logits = model(x_t, attn, steps, select=masked, perturb=perturb)
        row_of = masked.nonzero()[:, 0]
        loss = diffusion_loss(
            self.diffusion.loss, logits, x0[masked], row_of, steps, gen.sum(1), self.schedule, T
        )
        logs = {"masked_tokens": float(masked.sum()), "tokens": float(attn.sum())}
        return loss, logs
