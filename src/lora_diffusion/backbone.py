"""The denoiser: one wrapper over a Hugging Face masked LM, a remote-code diffusion LM (LLaDA,
Dream) or a causal LM run bidirectionally (``families.py``).

Data path: tokens x_t (B, L) -> [+ optional time embedding] -> trunk -> h_t (B, L, D)
-> [method hook: h'_t = perturb(h_t, t)] -> output head at the selected positions -> (N, V).
The output head (a 30k-word projection) is applied only where logits are needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .config import DiffusionConfig
from .families import FAMILIES, full_attention_mask, head_fn, hidden_size_of, mask_token_id

Tensor = torch.Tensor
Perturb = Callable[[Tensor, Tensor], Tensor]


def sinusoidal_features(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal features of continuous times t (B,) -> (B, dim):
    [cos(t f_j), sin(t f_j)], f_j = 1000 * max_period^(-j / (dim/2))  (DDPM/DiT style, t in [0, 1])."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs.to(t.device)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """Learned time conditioning added to the input embeddings: Linear(sinusoid(s / T)).
    Zero-initialised, so turning it on leaves the base model's outputs unchanged at start."""

    def __init__(self, hidden_size: int, num_steps: int, feature_dim: int = 128):
        super().__init__()
        self.num_steps = num_steps
        self.feature_dim = feature_dim
        self.proj = nn.Linear(feature_dim, hidden_size)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, steps: Tensor) -> Tensor:
        """steps (B,) int in 1..T -> (B, D)."""
        t = steps.float() / self.num_steps
        return self.proj(sinusoidal_features(t, self.feature_dim).to(self.proj.weight.dtype))


class DiffusionLM(nn.Module):
    """A masked diffusion LM over a transformers model of one of ``FAMILIES`` and its tokenizer.

    ``prompt_attention``: how the model attends, as trained (``prompt_cache.py``): "prefix" (prompt
    queries see only prompt keys; each call's rows announce their prompt lengths ``prompt_len``
    (B,) through ``prompt_cache.prompt_layout``), "full", or "" (a bare base: nothing recorded,
    full attention). Set by ``finetune`` and by loading an adapter."""

    prompt_attention = ""
    prompt_len: Tensor | None = None

    def __init__(self, mlm: nn.Module, tokenizer, diffusion: DiffusionConfig | None = None, family: str = "masked"):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"unknown backbone family {family!r}; choose from {FAMILIES}")
        self.mlm = mlm
        self.tokenizer = tokenizer
        self.family = family
        self.diffusion = diffusion or DiffusionConfig()
        self.mask_token_id = mask_token_id(mlm, tokenizer)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self._head = head_fn(mlm, family)
        self.time_embedding = (
            TimeEmbedding(self.hidden_size, self.diffusion.num_steps)
            if self.diffusion.time_conditioning
            else None
        )

    def set_process(self, num_steps: int = 0, schedule: str = "") -> None:
        """Train / sample with another number of steps T or noise schedule than the base was
        saved with (0 / "": keep). Time conditioning reads s / T, so it follows T."""
        from dataclasses import replace

        changes = {k: v for k, v in (("num_steps", num_steps), ("schedule", schedule)) if v}
        if changes:
            self.diffusion = replace(self.diffusion, **changes)
            if self.time_embedding is not None:
                self.time_embedding.num_steps = self.diffusion.num_steps

    # ----------------------------------------------------------------------------- shapes
    @property
    def hidden_size(self) -> int:
        return hidden_size_of(self.mlm.config)

    @property
    def vocab_size(self) -> int:
        return int(self.mlm.config.vocab_size)

    @property
    def trunk(self) -> nn.Module:
        """The model that maps ids to final hidden states (for LLaDA-style models, whose inner
        model returns logits too, the last of its hidden states: see ``families.py``)."""
        return self.mlm.base_model

    # ---------------------------------------------------------------------------- forward
    def trunk_trainable(self) -> bool:
        """Whether gradients must flow through the trunk: a trunk (or time-embedding) parameter
        is trained, or a method that lives inside the trunk says so (``needs_trunk_grad``)."""
        if getattr(self, "needs_trunk_grad", False):
            return True
        return any(p.requires_grad for p in self.trunk.parameters()) or (
            self.time_embedding is not None and any(p.requires_grad for p in self.time_embedding.parameters())
        )

    def hidden_states(
        self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor | None = None, all_layers: bool = False
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        """Final hidden states h_t of the trunk: (B, L) ids -> (B, L, D). A frozen trunk runs
        without autograd (nothing is stored for a backward pass through it). ``all_layers``:
        (h_t, (h^0, ..., h^n)), the embeddings' and every layer's output as well."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trunk_trainable()):
            return self._trunk_forward(input_ids, attention_mask, steps, all_layers)

    def _trunk_forward(self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor | None,
                       all_layers: bool = False):
        kwargs: dict = {}
        if self.prompt_attention == "prefix":
            attention_mask = self._prefix_mask(attention_mask)
        elif self.family == "a2d":  # a causal LM, run bidirectionally
            attention_mask = full_attention_mask(attention_mask, self.mlm.get_input_embeddings().weight.dtype)
        if self.family == "diffusion" or all_layers:  # LLaDA's inner model returns logits: take its last state
            kwargs["output_hidden_states"] = True
        if self.time_embedding is None:
            out = self.trunk(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        else:
            if steps is None:
                raise ValueError("time-conditioned backbone needs the step t of every row")
            embeds = self.mlm.get_input_embeddings()(input_ids)
            embeds = embeds + self.time_embedding(steps)[:, None, :].to(embeds.dtype)
            out = self.trunk(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        if self.family == "diffusion" and getattr(out, "last_hidden_state", None) is None:
            last = out.hidden_states[-1]
        else:
            last = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return (last, tuple(out.hidden_states)) if all_layers else last

    def _prefix_mask(self, attention_mask: Tensor) -> Tensor:
        """(B, L) padding mask -> the (B, 1, L, L) prefix mask of ``prompt_cache.attention_bias``."""
        from .prompt_cache import attention_bias

        if self.prompt_len is None or self.prompt_len.shape[0] != attention_mask.shape[0]:
            raise RuntimeError("prompt_attention: this model attends with prefix prompt attention and needs each row's "
                               "prompt length: run the call inside prompt_cache.prompt_layout(backbone, "
                               "generate_mask, attention_mask)")
        return attention_bias(attention_mask, self.prompt_len, self.mlm.get_input_embeddings().weight.dtype)

    def head(self, hidden: Tensor) -> Tensor:
        """Output head on hidden states (..., D) -> logits (..., V)."""
        return self._head(hidden)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        steps: Tensor | None = None,
        select: Tensor | None = None,
        perturb: Perturb | None = None,
        instruction_mask: Tensor | None = None,
        return_hidden: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Logits at the ``select`` (B, L) positions: (N, V), rows in ``select.nonzero()`` order.

        ``perturb(h (B, L, D), steps (B,)) -> h'`` is the single hook through which a method
        changes the denoising trajectory before the frozen output head. Without ``select``
        the logits of every position are returned, (B, L, V). ``instruction_mask`` is for
        methods that condition on the instruction; the plain backbone ignores it.
        ``return_hidden``: also return the (perturbed) hidden states at those positions,
        ((N, V), (N, D)), for a classification head (no second trunk pass)."""
        hidden = self.hidden_states(input_ids, attention_mask, steps)
        if perturb is not None:
            hidden = perturb(hidden, steps)
        if select is not None:
            hidden = hidden[select]
        logits = self.head(hidden)
        return (logits, hidden) if return_hidden else logits


def layer_stack(trunk: nn.Module) -> nn.ModuleList:
    """The trunk's stack of transformer layers: its largest ``nn.ModuleList`` whose children are
    all of one class (BERT's ``encoder.layer``, Llama's ``layers``, GPT-2's ``h``, LLaDA's
    ``blocks`` ...)."""
    best: nn.ModuleList | None = None
    for module in trunk.modules():
        if isinstance(module, nn.ModuleList) and len(module) and len({type(m) for m in module}) == 1:
            if best is None or len(module) > len(best):
                best = module
    if best is None:
        raise ValueError(f"cannot find the layer stack (a list of identical layers) of a {type(trunk).__name__}")
    return best



LAYER_COUNT_FIELDS = ("num_hidden_layers", "n_layers", "num_layers", "n_layer")


def keep_first_layers(backbone: DiffusionLM, n: int) -> None:
    """Cut the trunk to its first ``n`` layers (a smaller base from a bigger one: the scaling
    study); the model config's layer count follows, so a saved copy loads as n layers."""
    stack = layer_stack(backbone.trunk)
    if not 1 <= n <= len(stack):
        raise ValueError(f"keep_layers: the trunk has {len(stack)} layers; keep 1..{len(stack)}, got {n}")
    del stack[n:]
    fields = [f for f in LAYER_COUNT_FIELDS if hasattr(backbone.mlm.config, f)]
    if not fields:
        raise ValueError(f"keep_layers: {type(backbone.mlm.config).__name__} names no layer count "
                         f"({', '.join(LAYER_COUNT_FIELDS)})")
    for f in fields:
        setattr(backbone.mlm.config, f, n)


def unwrap_backbone(model: nn.Module) -> DiffusionLM:
    """The ``DiffusionLM`` inside a method model (or a DDP wrapper of one)."""
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, DiffusionLM) else inner.backbone
