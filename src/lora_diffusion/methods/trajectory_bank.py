"""The pieces of a trajectory adapter's phase banks: phase of a step, the bank of k low-rank
FiLM-conditioned modules, and the two regularisers on its factors.

    g_i(h, t, c) = W_A^(i) (gamma_i(c) * ReLU(W_B^(i) [h ; Emb(t)])) + beta_i(c)

Shapes: h (N, L, D), Emb(t) e (N, d_t), Enc(c) c (N, C); W_B^(i) (r, D + d_t), W_A^(i) (D, r),
gamma_i(c) = 1 + Linear(c) in R^r, beta_i(c) in R^D. The beta head is a full map
Linear(C, k D) (the paper), or with ``beta_rank`` = r_b > 0 a low-rank one
Linear(r_b, k D) . Linear(C, r_b) ("lean FiLM": (C + 1 + k D) r_b + k D parameters instead of
(C + 1) k D).
"""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


def phase_index(steps: Tensor, num_steps: int, boundaries: list[float]) -> Tensor:
    """Phase of each step (B,) -> (B,) long: 0 early (t > b_1 T), 1 mid (b_0 T < t <= b_1 T),
    2 late (t <= b_0 T). For T = 100: early 67..100, mid 34..66, late 1..33."""
    t = steps.double()
    lo, hi = boundaries[0] * num_steps, boundaries[1] * num_steps
    return torch.where(t > hi, 0, torch.where(t > lo, 1, 2)).long()


def beta_head(cond_dim: int, out: int, beta_rank: int = 0) -> nn.Module:
    """beta(c): (N, C) -> (N, out), zero at start. ``beta_rank`` 0: Linear(C, out) with zero
    weight and bias; r_b > 0: Linear(C, r_b, no bias) then Linear(r_b, out) whose weight and
    bias are zero (the first factor keeps its random init, so both factors train)."""
    if beta_rank:
        last = nn.Linear(beta_rank, out)
        head: nn.Module = nn.Sequential(nn.Linear(cond_dim, beta_rank, bias=False), last)
    else:
        head = last = nn.Linear(cond_dim, out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return head


class PhaseBank(nn.Module):
    """k modules of rank r: down (k r, D + d_t) = stacked W_B^(i), up (k, D, r) = W_A^(i)
    (zero at start, so g = 0), FiLM heads gamma (k r) = 1 + Linear(c), beta (k D) = beta(c)
    (zero at start)."""

    def __init__(self, hidden: int, time_dim: int, cond_dim: int, rank: int, k: int, beta_rank: int = 0):
        super().__init__()
        self.rank, self.k, self.hidden = rank, k, hidden
        self.down = nn.Linear(hidden + time_dim, k * rank, bias=False)
        self.up = nn.Parameter(torch.zeros(k, hidden, rank))
        self.gamma = nn.Linear(cond_dim, k * rank)
        nn.init.zeros_(self.gamma.weight)
        nn.init.zeros_(self.gamma.bias)
        self.beta = beta_head(cond_dim, k * hidden, beta_rank)

    def _conditioning(self, h: Tensor, e: Tensor, c: Tensor, rows: Tensor | None, sum_beta: bool = False):
        """Per condition row, gathered to h's rows: (W_B^e Emb(t) (N, k r), gamma (N, k r),
        beta (N, k, D), or with ``sum_beta`` sum_i beta_i (N, D)), with W_B = [W_B^h | W_B^e]
        split at column D. Computed once per row of e and c (B of them) and then indexed by
        ``rows``, never once per selected position."""
        w_e = self.down.weight[:, h.shape[-1]:]
        te, gamma, beta = e.to(h.dtype) @ w_e.t(), 1.0 + self.gamma(c), self.beta(c).view(-1, self.k, self.hidden)
        if sum_beta:
            beta = beta.sum(1)  # before the gather: B rows, not N
        if rows is not None:
            te, gamma, beta = te[rows], gamma[rows], beta[rows]
        return te, gamma, beta

    def _activations(self, h: Tensor, te: Tensor, gamma: Tensor) -> Tensor:
        """gamma_i(c) * ReLU(W_B^(i) [h ; Emb(t)]) for every module, stacked: (N, L, k r)."""
        w_h = self.down.weight[:, :h.shape[-1]]
        return torch.relu(h @ w_h.t() + te[:, None, :]) * gamma[:, None, :]

    def module_outputs(self, h: Tensor, e: Tensor, c: Tensor, rows: Tensor | None = None) -> Tensor:
        """g_i for each module: h (N, L, D), e (N, d_t), c (N, C) -> (N, L, k, D); ``rows`` as in
        ``forward``."""
        n, length, _ = h.shape
        te, gamma, beta = self._conditioning(h, e, c, rows)
        z = self._activations(h, te, gamma).view(n, length, self.k, self.rank)
        return torch.einsum("nlkr,kdr->nlkd", z, self.up) + beta[:, None]

    def forward(self, h: Tensor, e: Tensor, c: Tensor, rows: Tensor | None = None) -> Tensor:
        """sum_i g_i = [W_A^(1) .. W_A^(k)] z + sum_i beta_i(c): (N, L, D), one matrix product
        over the k r stacked activations z. ``rows`` (N,) long: row n of h is conditioned on
        e[rows[n]] and c[rows[n]] (e (B, d_t), c (B, C)); None: e and c have h's N rows."""
        te, gamma, beta = self._conditioning(h, e, c, rows, sum_beta=True)
        up = self.up.transpose(1, 2).reshape(self.k * self.rank, self.hidden).to(h.dtype)  # (k r, D)
        z, beta = self._activations(h, te, gamma), beta.to(h.dtype)  # z: (N, L, k r)
        if h.shape[1] == 1:  # selected positions: sum_i beta_i(c) + z [W_A^(1) .. W_A^(k)] in one fused product
            return torch.addmm(beta, z[:, 0], up)[:, None, :]
        return z @ up + beta[:, None, :]

    def factors(self) -> list[tuple[Tensor, Tensor]]:
        """(W_A^(i) (D, r), W_B^(i) (r, D + d_t)) for each module."""
        w_b = self.down.weight.view(self.k, self.rank, -1)
        return [(self.up[i], w_b[i]) for i in range(self.k)]


def bank_parameters(hidden: int, time_dim: int, cond_dim: int, rank: int, k: int, beta_rank: int = 0) -> int:
    """Closed form of ``PhaseBank``'s parameter count:
    k r (D + d_t) + k D r + (C + 1) k r + [(C + 1) k D  |  C r_b + (r_b + 1) k D]."""
    beta = (cond_dim + 1) * k * hidden if not beta_rank else cond_dim * beta_rank + (beta_rank + 1) * k * hidden
    return k * rank * (hidden + time_dim) + k * hidden * rank + (cond_dim + 1) * k * rank + beta


def nuclear_norm(w: Tensor, rtol: float | None = None) -> Tensor:
    """||W||_* = sum_i s_i, the sum of singular values, W (m, n).

    Its gradient is sum_i u_i v_i^T over the non-zero s_i. Singular values at or below the
    tolerance ``s_max * max(m, n) * eps(float32)`` (numpy's ``matrix_rank`` rule; ``rtol``
    overrides the relative factor) are treated as exactly zero and contribute the
    minimum-norm subgradient 0: at a rank-deficient W (such as the zero-initialised W_A after
    one step) round-off singular values would otherwise contribute arbitrary u v^T directions,
    different from one process to another (DDP replicas would drift apart)."""
    s = torch.linalg.svdvals(w.float())
    if rtol is None:
        rtol = max(w.shape[-2:]) * torch.finfo(torch.float32).eps
    tol = torch.clamp(s.max().detach() * rtol, min=1e-10) if s.numel() else 1e-10
    return torch.where(s > tol, s, torch.zeros_like(s)).sum()


def soft_threshold(w: Tensor, tau: float) -> Tensor:
    """The proximal operator of tau ||.||_* at W (m, n): U max(S - tau, 0) V^T, with
    W = U S V^T. Every singular value shrinks by tau and stops at zero."""
    u, s, vh = torch.linalg.svd(w.float(), full_matrices=False)
    return ((u * (s - tau).clamp(min=0)) @ vh).to(w.dtype)


def orthogonality(mats) -> Tensor:
    """sum_{i != j} ||A_i^T A_j||_F^2 over ordered pairs of (D, r) matrices."""
    mats = list(mats)
    total = mats[0].new_zeros(())
    for i, a in enumerate(mats):
        for j, b in enumerate(mats):
            if i != j:
                total = total + (a.t() @ b).pow(2).sum()
    return total
