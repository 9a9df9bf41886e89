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
    w = mask.to(h.dtype)
    return torch.einsum("bl,bld->bd", w, h) / w.sum(1, keepdim=True).clamp(min=1.0)  # no (B, L, D) temporary


class AttentionPool(nn.Module):
    """Attention pooling over the instruction: a = softmax_{j in c}(q . h_j / sqrt(D)),
    pool = sum_j a_j h_j; h (B, L, D), mask (B, L) -> (B, D). One learned query q (D,), zero
    at start, so the pool starts as the masked mean (rows with an empty mask give zeros)."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            return h.new_zeros(h.shape[0], h.shape[-1])
        scores = (h @ self.query.to(h.dtype)) / h.shape[-1] ** 0.5  # (B, L)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.nan_to_num(torch.softmax(scores, dim=-1))  # an empty row: all -inf -> 0
        return torch.einsum("bl,bld->bd", weights, h)


def make_pool(kind: str, dim: int) -> nn.Module | None:
    """None for the masked mean, an ``AttentionPool`` for "attention"."""
    return AttentionPool(dim) if kind == "attention" else None


class LayerMix(nn.Module):
    """A learned mix of the trunk's layer outputs (ELMo's scalar mix):
    h_mix = sum_l softmax(w)_l LN(h_l) over the L+1 states (embeddings, then each layer),
    each (B, L, D) -> (B, L, D); LN without parameters puts layers of different scale on one
    footing. w (L+1,) starts at 0 (a uniform mix)."""

    def __init__(self, num_states: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_states))

    def forward(self, states: tuple[Tensor, ...] | list[Tensor]) -> Tensor:
        if len(states) != self.logits.numel():
            raise ValueError(f"layer mix expects {self.logits.numel()} hidden states, got {len(states)}")
        w = torch.softmax(self.logits, 0)
        return sum(w[i].to(s.dtype) * nn.functional.layer_norm(s, s.shape[-1:]) for i, s in enumerate(states))


class TrunkPoolEncoder(nn.Module):
    """Enc(c) from the frozen trunk's own hidden states at the instruction positions (the same
    forward pass, no extra trunk call): masked mean-pool (or attention pool), then a trainable
    2-layer MLP."""

    kind = "trunk"

    def __init__(self, hidden_size: int, cond_dim: int, pool: str = "mean"):
        super().__init__()
        self.pool = make_pool(pool, hidden_size)
        self.mlp = nn.Sequential(nn.Linear(hidden_size, cond_dim), nn.GELU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, h: Tensor, instruction_mask: Tensor | None, input_ids: Tensor | None = None) -> Tensor:
        h = h.detach()
        pooled = masked_mean(h, instruction_mask) if self.pool is None else self.pool(h, instruction_mask)
        return self.mlp(pooled)


class SeparateEncoder(nn.Module):
    """A separate trainable transformer over the instruction tokens (the paper's variant): the
    frozen base's token embeddings (read, never trained or saved; ``bind``) plus learned position
    embeddings, ``layers`` pre-LN encoder layers of width ``dim`` and a final LayerNorm, masked
    mean-pool (or attention pool), then a linear map to ``cond_dim``.

    Not a vocabulary table of its own: one (V x D) table would be 11.7M trainable parameters on
    MiniLM (half the base), and trained from scratch at the adapter's rate it collapsed (Enc(c)
    the same for every input to four decimals, beta(c) an input-blind bias four times the size of
    h_t, every SST-2 prediction the majority class)."""

    kind = "separate"

    def __init__(self, dim: int, cond_dim: int, layers: int = 2, heads: int = 12, max_len: int = 512,
                 ffn_mult: int = 4, pool: str = "mean"):
        super().__init__()
        self.pool = make_pool(pool, dim)
        self.positions = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_mult * dim, dropout=0.1, batch_first=True,
                                           activation="gelu", norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.out = nn.Linear(dim, cond_dim)
        object.__setattr__(self, "tokens", None)  # the base's embeddings: a plain attribute, not a submodule

    def bind(self, embeddings: nn.Module) -> None:
        """Read the token embeddings of ``embeddings`` (the base's input embeddings, frozen)."""
        object.__setattr__(self, "tokens", embeddings)

    def forward(self, h: Tensor, instruction_mask: Tensor | None, input_ids: Tensor | None = None) -> Tensor:
        if input_ids is None or instruction_mask is None:
            return self.out(h.new_zeros(h.shape[0], self.out.in_features))
        if self.tokens is None:
            raise RuntimeError("SeparateEncoder: bind(the base's input embeddings) before use")
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        with torch.no_grad():
            x = self.tokens(input_ids).to(self.positions.weight.dtype)
        x = self.encoder(x + self.positions(pos)[None], src_key_padding_mask=~instruction_mask)
        x = torch.nan_to_num(x)  # rows with no instruction at all
        pooled = masked_mean(x, instruction_mask) if self.pool is None else self.pool(x, instruction_mask)
        return self.out(pooled)
