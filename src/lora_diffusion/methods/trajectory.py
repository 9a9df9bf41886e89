"""LoRA-Diffusion: low-rank perturbations of the denoising trajectory of a frozen diffusion LM.

    h'_t = h_t + sigma(t) * sum_{i=1..k} g_i(h_t, t, c)
    g_i(h_t, t, c) = A_i(c) ReLU(W_B^(i) [h_t ; Emb(t)]),   A_i(c) v = W_A^(i) (gamma_i(c) * v) + beta_i(c)

W_B^(i): (r, D + d_t) down-projection, W_A^(i): (D, r) up-projection, gamma_i(c) in R^r and
beta_i(c) in R^D from the instruction encoding Enc(c). Three phase banks (early t > b_1 T,
mid b_0 T < t <= b_1 T, late t <= b_0 T) each hold k modules of their own rank and scale;
parameters are shared by the steps of a phase, so their count does not depend on T.
The perturbation acts after the trunk: the trunk runs without autograd and only the
adapter, its encoder and its time embedding are trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..backbone import DiffusionLM
from ..config import require
from .conditioning import SeparateEncoder, TimestepEmbedding, TrunkPoolEncoder

Tensor = torch.Tensor
PHASES = ("early", "mid", "late")
ENCODERS = ("trunk", "separate")


@dataclass
class TrajectoryConfig:
    ranks: list[int] = field(default_factory=lambda: [64, 32, 8])  # early, mid, late
    sigmas: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25])
    num_modules: int = 2  # k
    boundaries: list[float] = field(default_factory=lambda: [1 / 3, 2 / 3])  # b_0, b_1 (fractions of T)
    time_dim: int = 128
    encoder: str = "trunk"
    cond_dim: int = 256
    encoder_layers: int = 2
    encoder_heads: int = 0  # 0: the base's number of attention heads
    lambda_rank: float = 0.01
    lambda_orth: float = 0.001

    def __post_init__(self) -> None:
        require(len(self.ranks) == 3, "ranks", f"need 3 (early, mid, late), got {self.ranks}")
        require(all(r >= 1 for r in self.ranks), "ranks", f"every rank must be >= 1, got {self.ranks}")
        require(len(self.sigmas) == 3, "sigmas", f"need 3 (early, mid, late), got {self.sigmas}")
        require(all(s >= 0 for s in self.sigmas), "sigmas", f"must be >= 0, got {self.sigmas}")
        require(self.num_modules >= 1, "num_modules", f"must be >= 1, got {self.num_modules}")
        b = self.boundaries
        require(len(b) == 2 and 0 < b[0] < b[1] < 1, "boundaries", f"need 0 < b0 < b1 < 1, got {b}")
        require(self.time_dim >= 2, "time_dim", f"must be >= 2, got {self.time_dim}")
        require(self.encoder in ENCODERS, "encoder", f"must be one of {ENCODERS}, got {self.encoder!r}")
        require(self.cond_dim >= 1, "cond_dim", f"must be >= 1, got {self.cond_dim}")
        require(self.encoder_layers >= 1, "encoder_layers", f"must be >= 1, got {self.encoder_layers}")
        require(self.encoder_heads >= 0, "encoder_heads", f"must be >= 0, got {self.encoder_heads}")
        require(self.lambda_rank >= 0, "lambda_rank", f"must be >= 0, got {self.lambda_rank}")
        require(self.lambda_orth >= 0, "lambda_orth", f"must be >= 0, got {self.lambda_orth}")

    def check_against(self, hidden_size: int) -> None:
        too_big = max(self.ranks)
        require(too_big <= hidden_size, "ranks", f"rank {too_big} exceeds the base's hidden size {hidden_size}")


def phase_index(steps: Tensor, num_steps: int, boundaries: list[float]) -> Tensor:
    """Phase of each step (B,) -> (B,) long: 0 early (t > b_1 T), 1 mid (b_0 T < t <= b_1 T),
    2 late (t <= b_0 T). For T = 100: early 67..100, mid 34..66, late 1..33."""
    t = steps.double()
    lo, hi = boundaries[0] * num_steps, boundaries[1] * num_steps
    return torch.where(t > hi, 0, torch.where(t > lo, 1, 2)).long()


class PhaseBank(nn.Module):
    """k modules of rank r: down (k r, D + d_t) = stacked W_B^(i), up (k, D, r) = W_A^(i)
    (zero at start, so g = 0), FiLM heads gamma (k r) = 1 + Linear(c), beta (k D) = Linear(c)
    (zero at start)."""

    def __init__(self, hidden: int, time_dim: int, cond_dim: int, rank: int, k: int):
        super().__init__()
        self.rank, self.k, self.hidden = rank, k, hidden
        self.down = nn.Linear(hidden + time_dim, k * rank, bias=False)
        self.up = nn.Parameter(torch.zeros(k, hidden, rank))
        self.gamma = nn.Linear(cond_dim, k * rank)
        self.beta = nn.Linear(cond_dim, k * hidden)
        for lin in (self.gamma, self.beta):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def module_outputs(self, h: Tensor, e: Tensor, c: Tensor) -> Tensor:
        """g_i for each module: h (N, L, D), e (N, d_t), c (N, C) -> (N, L, k, D)."""
        n, length, _ = h.shape
        x = torch.cat([h, e[:, None, :].expand(n, length, e.shape[-1]).to(h.dtype)], dim=-1)
        z = torch.relu(self.down(x)).view(n, length, self.k, self.rank)
        z = z * (1.0 + self.gamma(c)).view(n, 1, self.k, self.rank)
        out = torch.einsum("nlkr,kdr->nlkd", z, self.up)
        return out + self.beta(c).view(n, 1, self.k, self.hidden)

    def forward(self, h: Tensor, e: Tensor, c: Tensor) -> Tensor:
        """sum_i g_i: (N, L, D)."""
        return self.module_outputs(h, e, c).sum(2)

    def factors(self) -> list[tuple[Tensor, Tensor]]:
        """(W_A^(i) (D, r), W_B^(i) (r, D + d_t)) for each module."""
        w_b = self.down.weight.view(self.k, self.rank, -1)
        return [(self.up[i], w_b[i]) for i in range(self.k)]


class TrajectoryAdapter(nn.Module):
    """Timestep embedding, instruction encoder and the three phase banks."""

    def __init__(self, cfg: TrajectoryConfig, hidden: int, vocab_size: int, num_steps: int, heads: int = 12):
        super().__init__()
        cfg.check_against(hidden)
        heads = cfg.encoder_heads or heads
        if cfg.encoder == "separate":
            require(hidden % heads == 0, "encoder_heads", f"{heads} heads do not divide the hidden size {hidden}")
        self.cfg, self.num_steps = cfg, num_steps
        self.time_embedding = TimestepEmbedding(num_steps, cfg.time_dim)
        if cfg.encoder == "trunk":
            self.encoder = TrunkPoolEncoder(hidden, cfg.cond_dim)
        else:
            self.encoder = SeparateEncoder(vocab_size, hidden, cfg.cond_dim, cfg.encoder_layers, heads)
        self.banks = nn.ModuleList(
            PhaseBank(hidden, cfg.time_dim, cfg.cond_dim, r, cfg.num_modules) for r in cfg.ranks
        )
        self.register_buffer("sigmas", torch.tensor(cfg.sigmas, dtype=torch.float32), persistent=False)

    def condition(self, h: Tensor, steps: Tensor, instruction_mask: Tensor | None, input_ids: Tensor | None):
        """(phase (B,), Emb(t) (B, d_t), Enc(c) (B, C))."""
        phase = phase_index(steps, self.num_steps, self.cfg.boundaries)
        return phase, self.time_embedding(steps), self.encoder(h, instruction_mask, input_ids)

    def delta(self, h: Tensor, steps: Tensor, instruction_mask: Tensor | None = None,
              input_ids: Tensor | None = None) -> Tensor:
        """delta_t = sigma(t) sum_i g_i(h_t, t, c), each row through the bank of its own phase."""
        phase, e, c = self.condition(h, steps, instruction_mask, input_ids)
        return self._banked(h, phase, e, c)

    def _banked(self, h: Tensor, phase: Tensor, e: Tensor, c: Tensor) -> Tensor:
        """sigma_p * bank_p(h, e, c) for each row's phase p: h (N, L, D) -> (N, L, D)."""
        parts, order = [], []
        for p, bank in enumerate(self.banks):
            rows = (phase == p).nonzero().squeeze(1)
            if rows.numel():
                parts.append(self.sigmas[p] * bank(h[rows], e[rows], c[rows]))
                order.append(rows)
        out = torch.cat(parts)  # (N, L, D) in bank order; put rows back in batch order
        return out[torch.argsort(torch.cat(order))].to(h.dtype)

    def forward(self, h: Tensor, steps: Tensor, instruction_mask: Tensor | None = None,
                input_ids: Tensor | None = None, select: Tensor | None = None) -> Tensor:
        """h'_t = h_t + delta_t: (B, L, D). With ``select`` (B, L): h'_t only at the selected
        positions, (N, D) in ``select.nonzero()`` order: the same values (g acts position-wise;
        only Enc(c) pools over the instruction), computed only where logits are needed."""
        if select is None:
            return h + self.delta(h, steps, instruction_mask, input_ids)
        phase, e, c = self.condition(h, steps, instruction_mask, input_ids)
        rows = select.nonzero()[:, 0]
        h_sel = h[select]
        if rows.numel() == 0:
            return h_sel
        return h_sel + self._banked(h_sel[:, None, :], phase[rows], e[rows], c[rows])[:, 0]

    def regularizers(self) -> dict[str, Tensor]:
        """R_rank = sum ||W_A^(i)||_* + ||W_B^(i)||_* (sum of singular values) and
        R_orth = sum_{i != j} ||W_A^(i)T W_A^(j)||_F^2 over ordered pairs within each bank."""
        rank = orth = self.sigmas.new_zeros(())
        for bank in self.banks:
            factors = bank.factors()
            for w_a, w_b in factors:
                rank = rank + nuclear_norm(w_a) + nuclear_norm(w_b)
            orth = orth + orthogonality(w for w, _ in factors)
        return {"rank": rank, "orth": orth}


def nuclear_norm(w: Tensor, eps: float = 1e-10) -> Tensor:
    """||W||_* = sum_i s_i, the sum of singular values. Its gradient is sum_i u_i v_i^T over the
    non-zero s_i: at a rank-deficient W (such as the zero-initialised W_A) the zero singular
    values contribute the minimum-norm subgradient 0 instead of an arbitrary u v^T."""
    s = torch.linalg.svdvals(w.float())
    return torch.where(s > eps, s, torch.zeros_like(s)).sum()


def orthogonality(mats) -> Tensor:
    """sum_{i != j} ||A_i^T A_j||_F^2 over ordered pairs of (D, r) matrices."""
    mats = list(mats)
    total = mats[0].new_zeros(())
    for i, a in enumerate(mats):
        for j, b in enumerate(mats):
            if i != j:
                total = total + (a.t() @ b).pow(2).sum()
    return total


class TrajectoryModel(nn.Module):
    """A frozen ``DiffusionLM`` with a trajectory adapter on its hidden states."""

    method = "trajectory"

    def __init__(self, backbone: DiffusionLM, cfg: TrajectoryConfig):
        super().__init__()
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        heads = getattr(backbone.mlm.config, "num_attention_heads", None) or getattr(backbone.mlm.config, "n_heads", 12)
        self.adapter = TrajectoryAdapter(cfg, backbone.hidden_size, backbone.vocab_size,
                                         backbone.diffusion.num_steps, heads)
        self.cfg = cfg

    def forward(self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor, select: Tensor | None = None,
                instruction_mask: Tensor | None = None, return_hidden: bool = False):
        """Logits at ``select`` (N, V) (every position, (B, L, V), without it): one trunk pass,
        the adapter at the selected positions only, the frozen output head."""
        hidden = self.backbone.hidden_states(input_ids, attention_mask, steps)
        hidden = self.adapter(hidden, steps, instruction_mask, input_ids, select=select)
        logits = self.backbone.head(hidden)
        return (logits, hidden) if return_hidden else logits

    def regularization(self) -> dict[str, tuple[Tensor, float]]:
        terms = self.adapter.regularizers()
        return {"rank": (terms["rank"], self.cfg.lambda_rank), "orth": (terms["orth"], self.cfg.lambda_orth)}

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen trunk: no dropout, deterministic h_t
        return self
