"""Prefix tuning (Li & Liang, 2021) for bidirectional encoders: P trainable key and value
vectors are prepended to the keys and values of every self-attention layer, so every token
can attend to them; queries, the sequence and the trunk's weights are unchanged.

peft's prefix tuning passes the prefix as a key/value cache, which encoder self-attention in
transformers does not consume; here each layer's self-attention forward is wrapped instead
(BERT and RoBERTa layouts: ``query``/``key``/``value`` projections and the attention interface).
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from torch import nn

from ..backbone import DiffusionLM
from ..config import require
from .base import InBackboneMethod

PREFIX_TYPES = ("bert", "roberta", "xlm-roberta", "electra")


@dataclass
class PrefixConfig:
    num_prefix: int = 32
    init_std: float = 0.02

    def __post_init__(self) -> None:
        require(self.num_prefix >= 1, "num_prefix", f"must be >= 1, got {self.num_prefix}")
        require(self.init_std > 0, "init_std", f"must be > 0, got {self.init_std}")


def _extend_mask(mask: torch.Tensor | None, num_prefix: int) -> torch.Tensor | None:
    """Let every query attend to the prefix: pad the key axis of a (B, 1, Lq, Lk) mask."""
    if mask is None:
        return None
    fill = True if mask.dtype == torch.bool else 0.0
    pad = torch.full((*mask.shape[:-1], num_prefix), fill, dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


def _prefixed_forward(self, hidden_states, attention_mask=None, past_key_values=None, cache=None, **kwargs):
    """BertSelfAttention.forward with the layer's prefix keys/values prepended (a key/value cache, named
    ``past_key_values`` or, from transformers 5.24, ``cache``, is ignored: ``check_support`` refuses it)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    batch, length = hidden_states.shape[:2]
    shape = (batch, length, -1, self.attention_head_size)
    q = self.query(hidden_states).view(shape).transpose(1, 2)
    k = self.key(hidden_states).view(shape).transpose(1, 2)
    v = self.value(hidden_states).view(shape).transpose(1, 2)
    pk, pv = (p.to(k.dtype).view(1, -1, k.shape[1], self.attention_head_size).transpose(1, 2)
              for p in (self.prefix_key, self.prefix_value))
    k = torch.cat([pk.expand(batch, -1, -1, -1), k], dim=2)
    v = torch.cat([pv.expand(batch, -1, -1, -1), v], dim=2)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
    out, weights = attention(self, q, k, v, _extend_mask(attention_mask, pk.shape[2]),
                             dropout=0.0 if not self.training else self.dropout.p, scaling=self.scaling, **kwargs)
    return out.reshape(batch, length, -1).contiguous(), weights


class PrefixModel(InBackboneMethod):
    method = "prefix"

    def __init__(self, backbone: DiffusionLM, cfg: PrefixConfig):
        super().__init__()
        self.backbone, self.cfg = backbone, cfg
        for p in backbone.parameters():
            p.requires_grad_(False)
        layers = [m for m in backbone.mlm.modules() if all(hasattr(m, a) for a in ("query", "key", "value", "scaling"))]
        kind = backbone.mlm.config.model_type
        if not layers or kind not in PREFIX_TYPES:
            raise ValueError(f"prefix tuning supports the BERT-style attention of {PREFIX_TYPES}, not {kind!r} "
                             f"({type(backbone.mlm).__name__}, backbone family {getattr(backbone, 'family', 'masked')!r})")
        d = backbone.hidden_size
        self.prefix_keys = nn.ParameterList(nn.Parameter(torch.randn(cfg.num_prefix, d) * cfg.init_std) for _ in layers)
        self.prefix_values = nn.ParameterList(nn.Parameter(torch.randn(cfg.num_prefix, d) * cfg.init_std) for _ in layers)
        for layer, pk, pv in zip(layers, self.prefix_keys, self.prefix_values):
            object.__setattr__(layer, "prefix_key", pk)  # not registered twice
            object.__setattr__(layer, "prefix_value", pv)
            layer.forward = types.MethodType(_prefixed_forward, layer)
        backbone.needs_trunk_grad = True  # the prefix is trained through the frozen trunk
