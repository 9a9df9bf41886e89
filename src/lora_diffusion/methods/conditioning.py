"""Conditioning inputs of the trajectory adapters: the timestep embedding Emb(t) and the
instruction encoders Enc(c).

Shapes: h (B, L, D) hidden states, steps (B,) in 1..T, instruction_mask (B, L) bool marking
the clean instruction prefix c (template + input sentence; no special tokens).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import sinusoidal_features

Tensor = torch.Tensor


class TimestepEmbedding(nn.Module):
    """Emb(t) = W_2 SiLU(W_1 sinusoid(t / T) + b_1) + b_2: (B,) steps -> (B, d_t)."""

    def __init__(self, num_steps: int, dim: int, feature_dim: int = 128):
        super().__init__()
        self.num_steps, self.feature_dim = num_steps, feature_dim
        self.mlp = nn.Sequential(nn.Linear(feature_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, steps: Tensor) -> Tensor:
        feats = sinusoidal_features(steps.float() / self.num_steps, self.feature_dim)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


def masked_mean(h: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of h (B, L, D) over positions where mask (B, L) is True -> (B, D); rows with an
    empty mask (or no mask at all) give zeros."""
    if mask is None:
        return h.new_zeros(h.shape[0], h.shape[-1])
    w = mask.to(h.dtype)[..., None]
    return (h * w).sum(1) / w.sum(1).clamp(min=1.0)


class TrunkPoolEncoder(nn.Module):
    """Enc(c) from the frozen trunk's own hidden states at the instruction positions (the same
    forward pass, no extra trunk call): masked mean-pool, then a trainable 2-layer MLP."""

    kind = "trunk"

    def __init__(self, hidden_size: int, cond_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_size, cond_dim), nn.GELU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, h: Tensor, instruction_mask: Tensor | None, input_ids: Tensor | None = None) -> Tensor:
        return self.mlp(masked_mean(h.detach(), instruction_mask))


class SeparateEncoder(nn.Module):
    """A separate trainable transformer over the instruction tokens (the paper's variant):
    token + position embeddings, ``layers`` post-LN encoder layers of width ``dim``,
    masked mean-pool, then a linear map to ``cond_dim``."""

    kind = "separate"

    def __init__(self, vocab_size: int, dim: int, cond_dim: int, layers: int = 2, heads: int = 12,
                 max_len: int = 512, ffn_mult: int = 4):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_mult * dim, dropout=0.1, batch_first=True,
                                           activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, cond_dim)

    def forward(self, h: Tensor, instruction_mask: Tensor | None, input_ids: Tensor | None = None) -> Tensor:
        if input_ids is None or instruction_mask is None:
            return self.out(h.new_zeros(h.shape[0], self.out.in_features))
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.tokens(input_ids) + self.positions(pos)[None]
        x = self.encoder(x, src_key_padding_mask=~instruction_mask)
        x = torch.nan_to_num(x)  # rows with no instruction at all
        return self.out(masked_mean(x, instruction_mask))
