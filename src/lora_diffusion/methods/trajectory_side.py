"""Side attention: a small transformer beside the frozen trunk that re-reads every position (a
variant beyond the paper, after ladder side-tuning; the ``side`` preset).

Why: the phase-bank modules g_i act position by position and Enc(c) is one pooled vector, so the
paper's perturbation of position j can only re-read h_t[j] and a summary of the instruction; the
measurements (reports/quality) found the position-wise modules adding nothing on SST-2 and the
paper's configuration writing word salad on CommonGen, where perturbing inside the trunk (the
``deep`` variants, whose frozen layers above re-attend) helped, at the price of a backward pass
through those layers. A side network gets the re-attention without that price: it reads the
trunk's states (computed without autograd) and its own layer attends over the positions.

    z_0 = W_in LN(r) + W_e Emb(t)                       r (B, L, D) what the adapter reads
    z_1 = EncoderLayer(z_0)                             width d_s, pre-LN, padding keys masked
    delta_side = sigma(t) * W_out LN(z_1)               (B, L, D); W_out, b_out zero at start

LN(r) has no parameters. Parameters (D hidden, d_t time, d = d_s, m the FFN multiple, n layers):
(D + 1) d + d_t d + n ((4 + 2 m) d^2 + (m + 9) d) + 2 d + (d + 1) D.
"""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


class SideNetwork(nn.Module):
    """``forward(r, e, attention_mask)``: r (B, L, D), e = Emb(t) (B, d_t), attention_mask (B, L)
    (1 = a real token; None: every position) -> the side perturbation (B, L, D) before sigma(t)."""

    def __init__(self, hidden: int, time_dim: int, dim: int, heads: int, layers: int = 1, ffn_mult: int = 4):
        super().__init__()
        self.inp = nn.Linear(hidden, dim)
        self.time = nn.Linear(time_dim, dim, bias=False)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_mult * dim, dropout=0.0, batch_first=True,
                                           activation="gelu", norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.out = nn.Linear(dim, hidden)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, r: Tensor, e: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        z = self.inp(nn.functional.layer_norm(r.detach(), r.shape[-1:]).to(self.inp.weight.dtype))
        z = z + self.time(e.to(z.dtype))[:, None, :]
        pad = None if attention_mask is None else ~attention_mask.bool()
        return self.out(self.encoder(z, src_key_padding_mask=pad))


def side_parameters(hidden: int, time_dim: int, dim: int, layers: int = 1, ffn_mult: int = 4) -> int:
    """Closed form of ``SideNetwork``'s parameter count (the module docstring's formula)."""
    per_layer = (4 + 2 * ffn_mult) * dim ** 2 + (ffn_mult + 9) * dim
    return (hidden + 1) * dim + time_dim * dim + layers * per_layer + 2 * dim + (dim + 1) * hidden
