"""Backbone families behind the one ``DiffusionLM`` interface (hidden states, output head, mask token).

- ``masked``: transformers' masked-LM encoders (BERT, RoBERTa, XLM-R, DistilBERT, ELECTRA,
  DeBERTa-v2, ModernBERT, EuroBERT): ``AutoModelForMaskedLM``, the trunk is ``base_model``.
- ``diffusion``: remote-code diffusion LMs in the LLaDA / Dream style: a decoder with
  bidirectional attention whose forward returns logits, the mask token id in its config
  (``mask_token_id``), loaded with ``trust_remote_code`` through ``AutoModel``. When its
  ``base_model`` returns ``last_hidden_state`` (Dream) that is the trunk; otherwise (LLaDA, whose
  inner model returns logits) the whole model runs once with ``output_hidden_states=True`` and
  the last hidden state (after the final norm) is taken; the head is ``get_output_embeddings()``.
- ``a2d`` (autoregressive-to-diffusion): any causal LM (GPT-2, Llama, Qwen2, Mistral, ...) run
  with a full, non-causal 4D attention mask (transformers uses a 4D mask as given, and SDPA then
  gets no ``is_causal``) and its LM head. The head scores the token at its own position (as
  LLaDA), not the next one: the AR head's shift is unlearned by training. A tokenizer without
  a mask token gets one added (``<|mask|>``) and the embeddings grow by one row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

FAMILIES = ("masked", "diffusion", "a2d")
MASK_TOKEN = "<|mask|>"
Tensor = torch.Tensor


def detect_family(config: Any) -> str:
    """Family of a transformers config (object or config.json dict): custom code (``auto_map``)
    -> diffusion; a causal-LM architecture -> a2d; anything else -> masked."""
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    if get("auto_map"):
        return "diffusion"
    archs = get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "a2d"
    return "masked"


def hidden_size_of(config: Any) -> int:
    for key in ("hidden_size", "dim", "n_embd", "d_model"):
        value = getattr(config, key, None)
        if value:
            return int(value)
    raise TypeError(f"cannot tell the hidden size of a {getattr(config, 'model_type', '?')!r} config")


def heads_of(config: Any) -> int:
    for key in ("num_attention_heads", "n_heads", "n_head"):
        value = getattr(config, key, None)
        if value:
            return int(value)
    return 12


def head_fn(mlm: nn.Module, family: str) -> Callable[[Tensor], Tensor]:
    """The output head of a transformers model as a function h (..., D) -> (..., V).
    (Plain functions, so the head is not registered a second time as a submodule.)"""
    if family in ("diffusion", "a2d"):
        out = mlm.get_output_embeddings()
        if out is None:
            raise TypeError(f"{type(mlm).__name__} has no output embeddings (get_output_embeddings() is None)")
        return lambda h: out(h)
    if hasattr(mlm, "cls"):  # BERT family, legacy DeBERTa-v2
        return lambda h: mlm.cls(h)
    if hasattr(mlm, "lm_predictions"):  # DeBERTa-v2
        return lambda h: mlm.lm_predictions(h, mlm.deberta.embeddings.word_embeddings)
    if hasattr(mlm, "generator_predictions"):  # ELECTRA (generator)
        return lambda h: mlm.generator_lm_head(mlm.generator_predictions(h))
    if hasattr(mlm, "lm_head"):  # RoBERTa, XLM-R, EuroBERT, ...
        return lambda h: mlm.lm_head(h)
    if hasattr(mlm, "head") and hasattr(mlm, "decoder"):  # ModernBERT
        return lambda h: mlm.decoder(mlm.head(h))
    if hasattr(mlm, "vocab_projector"):  # DistilBERT
        return lambda h: mlm.vocab_projector(mlm.vocab_layer_norm(mlm.activation(mlm.vocab_transform(h))))
    raise TypeError(
        f"don't know the output head of {type(mlm).__name__}; supported: BERT, RoBERTa, XLM-R, DistilBERT, "
        "ELECTRA, DeBERTa-v2, ModernBERT, EuroBERT and models with a `cls` or `lm_head` module"
    )


def full_attention_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, L) padding mask -> (B, 1, L, L) additive mask: every query sees every real key
    (no causal triangle); padding keys get the dtype's minimum."""
    keep = attention_mask.bool()[:, None, None, :].expand(-1, 1, attention_mask.shape[1], -1)
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    return torch.where(keep, zero, torch.finfo(dtype).min)


def mask_token_id(mlm: nn.Module, tokenizer) -> int:
    """The config's ``mask_token_id`` (LLaDA, Dream) when it has one, else the tokenizer's."""
    from_config = getattr(mlm.config, "mask_token_id", None)
    if from_config is not None:
        return int(from_config)
    if tokenizer.mask_token_id is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no mask token and the config no mask_token_id")
    return int(tokenizer.mask_token_id)


def ensure_mask_token(mlm: nn.Module, tokenizer) -> None:
    """A causal LM's tokenizer rarely has a mask token: add one and grow the embeddings."""
    if getattr(mlm.config, "mask_token_id", None) is not None or tokenizer.mask_token_id is not None:
        return
    tokenizer.add_special_tokens({"mask_token": MASK_TOKEN})
    if len(tokenizer) > mlm.get_input_embeddings().weight.shape[0]:
        mlm.resize_token_embeddings(len(tokenizer))
