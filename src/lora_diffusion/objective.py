"""The denoising objective shared by pretraining and every fine-tuning method.

batch (clean x_0, masks) -> draw s ~ U{1..T} -> masked x_t ~ q(x_t | x_0) -> backbone
(+ method hook) -> logits at masked positions only -> L_simple or the ELBO.
"""

from __future__ import annotations

import torch

from .backbone import unwrap_backbone
from .config import DiffusionConfig
from .diffusion import diffusion_loss, forward_mask, get_schedule, mask_probability, sample_steps
from .methods.head import head_loss, head_of
from .prompt_cache import prompt_layout

Tensor = torch.Tensor


class DiffusionObjective:
    """Callable ``(model, batch, generator) -> (loss, logs)`` for the trainer.

    ``batch`` holds ``input_ids`` (B, L) = x_0, ``attention_mask`` (B, L) and
    ``generate_mask`` (B, L) (response positions; only they are masked and scored), and
    optionally ``instruction_mask`` (B, L) (the clean instruction prefix c). A method model
    with a ``regularization()`` method adds sum_j lambda_j R_j to the loss; each term is logged.
    A model with a classification head (``cls_head``) and a batch with ``label`` (B,) add the
    head's cross-entropy at the masked anchors times ``cls_head_weight`` (``methods/head.py``).
    Under the backbone's ``prompt_attention="prefix"`` (``finetune``'s option) each row's prompt,
    every position before its first ``generate_mask`` position, attends only to itself, with the
    mask generation uses (``prompt_cache.py``)."""

    def __init__(self, diffusion: DiffusionConfig):
        self.diffusion = diffusion
        self.schedule = get_schedule(diffusion.schedule)

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        backbone = unwrap_backbone(model)
        x0, attn, gen = batch["input_ids"], batch["attention_mask"], batch["generate_mask"].bool()
        T = self.diffusion.num_steps
        steps = sample_steps(x0.shape[0], T, generator).to(x0.device)
        x_t, masked = forward_mask(
            x0, gen, mask_probability(self.schedule, steps, T), backbone.mask_token_id, generator
        )
        instr = batch.get("instruction_mask")
        head = head_of(model) if "label" in batch else None
        extra = {"task_ids": batch["task_ids"]} if "task_ids" in batch else {}  # mixed-task batches
        if head is not None:
            extra["return_hidden"] = True
        with prompt_layout(backbone, gen, attn):  # prefix prompt attention: the prompt is every position before gen
            out = model(x_t, attn, steps, select=masked, instruction_mask=None if instr is None else instr.bool(),
                        **extra)
        logits, hidden = out if head is not None else (out, None)
        row_of = masked.nonzero()[:, 0]
        loss = diffusion_loss(
            self.diffusion.loss, logits, x0[masked], row_of, steps, gen.sum(1), self.schedule, T
        )
        logs = {"loss_denoise": loss.item(), "masked_tokens": float(masked.sum()), "tokens": float(attn.sum())}
        if head is not None:
            h_loss, scored = head_loss(head, hidden, masked, gen, batch["label"])
            logs.update(loss_head=h_loss.item(), head_rows=float(scored))
            loss = loss + getattr(model, "module", model).cls_head_weight * h_loss
        regularization = getattr(getattr(model, "module", model), "regularization", None)
        if regularization is not None:
            for name, (value, weight) in regularization().items():
                logs[f"reg_{name}"] = value.item()
                loss = loss + weight * value
        return loss, logs
