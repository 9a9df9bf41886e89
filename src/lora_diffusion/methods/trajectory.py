"""LoRA-Diffusion: low-rank perturbations of the denoising trajectory of a frozen diffusion LM.

    h'_t = h_t + sigma(t) * sum_{i=1..k} g_i(h_t, t, c)
    g_i(h_t, t, c) = A_i(c) ReLU(W_B^(i) [h_t ; Emb(t)]),   A_i(c) v = W_A^(i) (gamma_i(c) * v) + beta_i(c)

W_B^(i): (r, D + d_t) down-projection, W_A^(i): (D, r) up-projection, gamma_i(c) in R^r and
beta_i(c) in R^D from the instruction encoding Enc(c). Three phase banks (early t > b_1 T,
mid b_0 T < t <= b_1 T, late t <= b_0 T) each hold k modules of their own rank and scale;
parameters are shared by the steps of a phase, so their count does not depend on T.
The perturbation acts after the trunk: the trunk runs without autograd and only the
adapter, its encoder and its time embedding are trained.

Variants beyond the paper (options of the same method; ``PRESETS`` names tested combinations,
"paper" is the paper's configuration):
- ``read="mix"``: W_B and Enc(c) read a learned mix of every trunk layer's output
  (``conditioning.LayerMix``) instead of the last one; the perturbation still adds to h_t.
- ``pool="attention"``: Enc(c) pools the instruction with a learned query (starts as the mean).
- ``beta_rank`` r_b > 0: "lean FiLM", beta(c) through a rank-r_b map (the paper's full beta
  heads are most of its parameters).
- ``shared_bank``: one bank for the three phases (each keeps its sigma): the ablation of phases.
- ``deep_layers``: perturbations of the hidden states at chosen trunk layers too
  (``trajectory_deep``); the backward pass then runs through the layers above the lowest one.
  ``deep_all``: at the output of every layer below the last (the ``deep-all`` preset).
- ``side_dim`` d_s > 0: a side attention network (``trajectory_side``) re-reads every position of
  what the adapter reads and adds sigma(t) W_out(...) to h_t, the trunk still without autograd
  (the ``side`` preset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..backbone import DiffusionLM, layer_stack
from ..config import require
from .conditioning import LayerMix, SeparateEncoder, TimestepEmbedding, TrunkPoolEncoder
from .trajectory_bank import PhaseBank, nuclear_norm, orthogonality, phase_index, soft_threshold
from .trajectory_deep import DeepSites, resolve_layers
from .trajectory_side import SideNetwork

Tensor = torch.Tensor
PHASES = ("early", "mid", "late")
ENCODERS = ("trunk", "separate")
READS = ("last", "mix")
POOLS = ("mean", "attention")
RANK_PENALTIES = ("proximal", "loss")
__all__ = ["PHASES", "TrajectoryAdapter", "TrajectoryConfig", "TrajectoryModel", "nuclear_norm", "orthogonality",
           "phase_index"]

_LEAN = {"ranks": [32, 16, 8], "time_dim": 64, "cond_dim": 128, "beta_rank": 8}
@dataclass
class TrajectoryConfig:
    """Options of the trajectory method. ``preset`` names the combination the values came from:
    in a YAML file or ``method_config`` the preset's values are applied first and the other
    keys given override them (``config.from_dict``)."""

    PRESETS: ClassVar[dict[str, dict]] = {
        "paper": {},
        "lean": dict(_LEAN),
        "mix": {**_LEAN, "read": "mix", "pool": "attention"},
        "deep": {**_LEAN, "deep_layers": [-3, -2], "deep_rank": 8},
        "deep-all": {**_LEAN, "deep_all": True, "deep_rank": 8},
        "side": {**_LEAN, "read": "mix", "pool": "attention", "side_dim": 64},
        "side2": {**_LEAN, "read": "mix", "pool": "attention", "side_dim": 64, "side_layers": 2},
    }
    preset: str = "paper"
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
    # proximal: after each optimiser step the factors' singular values shrink by lr x lambda_rank
    # (the proximal step of lambda_rank ||W||_*, decoupled from Adam as AdamW's weight decay is);
    # loss: lambda_rank ||W||_* added to the loss (as the paper writes it: under Adam its
    # constant-size subgradient shrinks W_B at about lr per step, to zero before W_A has grown)
    rank_penalty: str = "proximal"
    read: str = "last"  # last | mix: what W_B and Enc(c) read
    pool: str = "mean"  # mean | attention: how Enc(c) pools the instruction
    beta_rank: int = 0  # 0: full beta heads (the paper); r_b > 0: beta through a rank-r_b map
    shared_bank: bool = False  # one bank for all three phases (needs equal ranks)
    deep_layers: list[int] = field(default_factory=list)  # trunk layers whose outputs are perturbed too
    deep_rank: int = 8  # rank of each deep layer's modules
    deep_all: bool = False  # perturb the output of every trunk layer below the last (not with deep_layers)
    side_dim: int = 0  # 0: none; d_s > 0: a side attention network of this width
    side_heads: int = 4
    side_layers: int = 1

    @property
    def deep(self) -> bool:
        """Perturbations inside the trunk (``deep_layers`` or ``deep_all``)."""
        return bool(self.deep_layers) or self.deep_all

    def deep_sites(self, num_layers: int) -> list[int]:
        """The 0-based trunk layers whose outputs are perturbed."""
        return list(range(num_layers - 1)) if self.deep_all else resolve_layers(self.deep_layers, num_layers)

    def __post_init__(self) -> None:
        require(self.preset in self.PRESETS, "preset", f"must be one of {sorted(self.PRESETS)}, got {self.preset!r}")
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
        require(self.rank_penalty in RANK_PENALTIES, "rank_penalty",
                f"must be one of {RANK_PENALTIES}, got {self.rank_penalty!r}")
        require(self.read in READS, "read", f"must be one of {READS}, got {self.read!r}")
        require(self.pool in POOLS, "pool", f"must be one of {POOLS}, got {self.pool!r}")
        require(self.beta_rank >= 0, "beta_rank", f"must be >= 0, got {self.beta_rank}")
        require(not self.shared_bank or len(set(self.ranks)) == 1, "shared_bank",
                f"one bank for all phases needs equal ranks, got {self.ranks}")
        require(self.deep_rank >= 1, "deep_rank", f"must be >= 1, got {self.deep_rank}")
        require(not (self.deep_layers and self.deep_all), "deep_all",
                f"deep_all perturbs every layer: give it or deep_layers, not both (deep_layers={self.deep_layers})")
        require(not (self.deep and self.read == "mix"), "read",
                "read='mix' needs every layer's output before any perturbation: not with deep_layers or deep_all")
        require(self.side_dim >= 0, "side_dim", f"must be >= 0, got {self.side_dim}")
        require(self.side_heads >= 1 and self.side_dim % self.side_heads == 0, "side_heads",
                f"must be >= 1 and divide side_dim {self.side_dim}, got {self.side_heads}")
        require(self.side_layers >= 1, "side_layers", f"must be >= 1, got {self.side_layers}")
        require(not (self.side_dim and self.deep), "side_dim",
                "a side network reads the trunk's states beside it: not with deep_layers or deep_all")

    def check_against(self, hidden_size: int) -> None:
        too_big = max(self.ranks + ([self.deep_rank] if self.deep else []))
        require(too_big <= hidden_size, "ranks", f"rank {too_big} exceeds the base's hidden size {hidden_size}")


class TrajectoryAdapter(nn.Module):
    """Timestep embedding, instruction encoder, the phase banks (three, or one shared) and,
    for the variants, the layer mix and the deep sites. ``num_layers``: the trunk's depth
    (needed by ``read="mix"`` and the deep sites only)."""

    def __init__(self, cfg: TrajectoryConfig, hidden: int, num_steps: int, heads: int = 12, num_layers: int = 0):
        super().__init__()
        cfg.check_against(hidden)
        heads = cfg.encoder_heads or heads
        if cfg.encoder == "separate":
            require(hidden % heads == 0, "encoder_heads", f"{heads} heads do not divide the hidden size {hidden}")
        require(num_layers > 0 or (cfg.read == "last" and not cfg.deep), "read",
                "the layer mix and deep layers need the trunk's number of layers")
        self.cfg, self.num_steps = cfg, num_steps
        self.time_embedding = TimestepEmbedding(num_steps, cfg.time_dim)
        if cfg.encoder == "trunk":
            self.encoder = TrunkPoolEncoder(hidden, cfg.cond_dim, cfg.pool)
        else:
            self.encoder = SeparateEncoder(hidden, cfg.cond_dim, cfg.encoder_layers, heads, pool=cfg.pool)
        ranks = cfg.ranks[:1] if cfg.shared_bank else cfg.ranks
        self.banks = nn.ModuleList(
            PhaseBank(hidden, cfg.time_dim, cfg.cond_dim, r, cfg.num_modules, cfg.beta_rank) for r in ranks
        )
        self.mix = LayerMix(num_layers + 1) if cfg.read == "mix" else None
        self.deep = (DeepSites(cfg.deep_sites(num_layers), hidden, cfg.time_dim, cfg.cond_dim,
                               cfg.deep_rank, cfg.num_modules, cfg.beta_rank) if cfg.deep else None)
        self.side = (SideNetwork(hidden, cfg.time_dim, cfg.side_dim, cfg.side_heads, cfg.side_layers)
                     if cfg.side_dim else None)
        self.register_buffer("sigmas", torch.tensor(cfg.sigmas, dtype=torch.float32), persistent=False)

    @property
    def rank_loss_weight(self) -> float:
        """lambda_rank in the loss (``rank_penalty="loss"``), else 0 (the proximal step applies it)."""
        return self.cfg.lambda_rank if self.cfg.rank_penalty == "loss" else 0.0

    @torch.no_grad()
    def after_optimizer_step(self, lr: float) -> None:
        """``rank_penalty="proximal"``: W <- prox_{lr lambda_rank ||.||_*}(W) for every W_A^(i) and
        W_B^(i) (phase banks and deep sites), in place."""
        tau = lr * self.cfg.lambda_rank
        if self.cfg.rank_penalty != "proximal" or tau <= 0:
            return
        for factors in self.all_factors():
            for w_a, w_b in factors:
                w_a.copy_(soft_threshold(w_a, tau))
                w_b.copy_(soft_threshold(w_b, tau))

    def bind(self, backbone: DiffusionLM) -> None:
        """A separate instruction encoder reads the base's (frozen) token embeddings."""
        if isinstance(self.encoder, SeparateEncoder):
            self.encoder.bind(backbone.mlm.get_input_embeddings())

    def condition(self, h: Tensor, steps: Tensor, instruction_mask: Tensor | None, input_ids: Tensor | None,
                  c: Tensor | None = None):
        """(phase (B,), Emb(t) (B, d_t), Enc(c) (B, C)); a given ``c`` is used as it is."""
        phase = phase_index(steps, self.num_steps, self.cfg.boundaries)
        if c is None:
            c = self.encoder(h, instruction_mask, input_ids)
        return phase, self.time_embedding(steps), c

    def delta(self, h: Tensor, steps: Tensor, instruction_mask: Tensor | None = None,
              input_ids: Tensor | None = None, c: Tensor | None = None) -> Tensor:
        """delta_t = sigma(t) sum_i g_i(h_t, t, c), each row through the bank of its own phase;
        h (B, L) is what W_B and Enc(c) read (h_t, or the layer mix)."""
        phase, e, c = self.condition(h, steps, instruction_mask, input_ids, c)
        return self._banked(h, phase, e, c)

    def _banked(self, h: Tensor, phase: Tensor, e: Tensor, c: Tensor, rows: Tensor | None = None) -> Tensor:
        """sigma_p * bank_p(h, e, c) for each row's phase p: h (N, L, D) -> (N, L, D). ``rows``
        (N,) long: h's row n belongs to batch row rows[n] (phase, e and c then have B rows and
        are indexed per bank, ``PhaseBank.forward``); None: every argument has N rows."""
        phase_n = phase if rows is None else phase[rows]
        if len(self.banks) == 1:  # one bank shared by the phases, each with its own sigma
            return (self.sigmas[phase_n][:, None, None] * self.banks[0](h, e, c, rows)).to(h.dtype)
        out = None
        for p, bank in enumerate(self.banks):
            idx = (phase_n == p).nonzero().squeeze(1)
            if idx.numel() == len(phase_n):  # every row in this phase (a whole generation batch)
                return (self.sigmas[p] * bank(h, e, c, rows)).to(h.dtype)
            if idx.numel():
                part = self.sigmas[p] * bank(h[idx], e, c, idx if rows is None else rows[idx])
                out = h.new_zeros(h.shape) if out is None else out
                out = out.index_copy(0, idx, part.to(h.dtype))
        return out

    def selected_delta(self, h: Tensor, steps: Tensor, select: Tensor, instruction_mask: Tensor | None = None,
                       input_ids: Tensor | None = None, c: Tensor | None = None,
                       picked: Tensor | None = None) -> Tensor:
        """delta_t at the ``select`` (B, L) positions only: (N, D) in ``select.nonzero()`` order
        (g acts position-wise; only Enc(c) pools over the instruction, once per row).
        ``picked``: h[select] when the caller has it already."""
        phase, e, c = self.condition(h, steps, instruction_mask, input_ids, c)
        rows = select.nonzero()[:, 0]
        if rows.numel() == 0:
            return h.new_zeros(0, h.shape[-1])
        picked = h[select] if picked is None else picked
        return self._banked(picked[:, None, :], phase, e, c, rows)[:, 0]

    def forward(self, h: Tensor, steps: Tensor, instruction_mask: Tensor | None = None,
                input_ids: Tensor | None = None, select: Tensor | None = None, read: Tensor | None = None,
                c: Tensor | None = None, attention_mask: Tensor | None = None) -> Tensor:
        """h'_t = h_t + delta_t: (B, L, D). With ``select`` (B, L): h'_t only at the selected
        positions, (N, D) in ``select.nonzero()`` order: the same values (g acts position-wise;
        only Enc(c) pools over the instruction), computed only where logits are needed.
        ``read`` (B, L, D): what W_B and Enc(c) read instead of h_t (the layer mix).
        ``attention_mask`` (B, L): the side network's keys (every position without it)."""
        if select is None:
            out = h + self.delta(h if read is None else read, steps, instruction_mask, input_ids, c)
        else:
            picked = h[select]
            out = picked + self.selected_delta(h if read is None else read, steps, select, instruction_mask,
                                               input_ids, c, picked=picked if read is None else None)
        if self.side is None:
            return out
        side = self.side_delta(h if read is None else read, steps, attention_mask)
        return out + (side if select is None else side[select]).to(out.dtype)

    def side_delta(self, r: Tensor, steps: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """sigma(t) * SideNetwork(r, Emb(t)): (B, L, D) at every position (it attends over them all)."""
        sigma = self.sigmas[phase_index(steps, self.num_steps, self.cfg.boundaries)]
        return sigma[:, None, None].to(r.dtype) * self.side(r, self.time_embedding(steps), attention_mask).to(r.dtype)

    def all_factors(self) -> list[list[tuple[Tensor, Tensor]]]:
        """(W_A, W_B) of every module, grouped by bank (phase banks, then deep sites)."""
        groups = [bank.factors() for bank in self.banks]
        return groups + (self.deep.factors() if self.deep is not None else [])

    def regularizers(self) -> dict[str, Tensor]:
        """R_rank = sum ||W_A^(i)||_* + ||W_B^(i)||_* (sum of singular values) and
        R_orth = sum_{i != j} ||W_A^(i)T W_A^(j)||_F^2 over ordered pairs within each bank
        (deep sites included)."""
        rank = orth = self.sigmas.new_zeros(())
        for factors in self.all_factors():
            for w_a, w_b in factors:
                rank = rank + nuclear_norm(w_a) + nuclear_norm(w_b)
            orth = orth + orthogonality(w for w, _ in factors)
        return {"rank": rank, "orth": orth}


def trunk_depth(backbone: DiffusionLM) -> int:
    """Number of transformer layers of the trunk."""
    return len(layer_stack(backbone.trunk))


class TrajectoryModel(nn.Module):
    """A frozen ``DiffusionLM`` with a trajectory adapter on its hidden states."""

    method = "trajectory"

    def __init__(self, backbone: DiffusionLM, cfg: TrajectoryConfig):
        super().__init__()
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        heads = getattr(backbone.mlm.config, "num_attention_heads", None) or getattr(backbone.mlm.config, "n_heads", 12)
        depth = trunk_depth(backbone) if (cfg.read == "mix" or cfg.deep) else 0
        self.adapter = TrajectoryAdapter(cfg, backbone.hidden_size, backbone.diffusion.num_steps, heads, depth)
        self.adapter.bind(backbone)
        self.cfg = cfg
        if self.adapter.deep is not None:
            self.adapter.deep.attach(layer_stack(backbone.trunk))
            backbone.needs_trunk_grad = True  # activations above the lowest deep layer need a backward pass
            self.supports_gradient_checkpointing = False  # recomputed layers would miss their perturbation

    def forward(self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor, select: Tensor | None = None,
                instruction_mask: Tensor | None = None, return_hidden: bool = False):
        """Logits at ``select`` (N, V) (every position, (B, L, V), without it): one trunk pass,
        the adapter at the selected positions only, the frozen output head."""
        hidden = self.perturbed_hidden(input_ids, attention_mask, steps, select, instruction_mask)
        logits = self.backbone.head(hidden)
        return (logits, hidden) if return_hidden else logits

    def perturbed_hidden(self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor,
                         select: Tensor | None = None, instruction_mask: Tensor | None = None) -> Tensor:
        """h'_t: (B, L, D), or (N, D) at ``select``; one trunk pass."""
        adapter, read, c = self.adapter, None, None
        if adapter.deep is not None:
            ctx = {"sigma": adapter.sigmas[phase_index(steps, adapter.num_steps, self.cfg.boundaries)],
                   "e": adapter.time_embedding(steps), "c": None,
                   "encode": lambda h: adapter.encoder(h, instruction_mask, input_ids)}
            adapter.deep.context = ctx
            try:
                hidden = self.backbone.hidden_states(input_ids, attention_mask, steps)
            finally:
                adapter.deep.context = None
            c = ctx["c"]
        elif adapter.mix is not None:
            hidden, states = self.backbone.hidden_states(input_ids, attention_mask, steps, all_layers=True)
            read = adapter.mix(states)
        else:
            hidden = self.backbone.hidden_states(input_ids, attention_mask, steps)
        return adapter(hidden, steps, instruction_mask, input_ids, select=select, read=read, c=c,
                       attention_mask=attention_mask)

    def delta(self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor,
              instruction_mask: Tensor | None = None) -> Tensor:
        """What the method adds to the last hidden state, h'_t - h_t: (B, L, D). With deep
        layers, against the plain trunk on the same x_t (a second trunk pass: for analyses)."""
        if self.adapter.deep is None and self.adapter.mix is None and self.adapter.side is None:
            h = self.backbone.hidden_states(input_ids, attention_mask, steps)
            return self.adapter.delta(h, steps, instruction_mask, input_ids)
        perturbed = self.perturbed_hidden(input_ids, attention_mask, steps, None, instruction_mask)
        return perturbed - self.backbone.hidden_states(input_ids, attention_mask, steps)

    def regularization(self) -> dict[str, tuple[Tensor, float]]:
        terms = self.adapter.regularizers()
        return {"rank": (terms["rank"], self.adapter.rank_loss_weight), "orth": (terms["orth"], self.cfg.lambda_orth)}

    def after_optimizer_step(self, lr: float) -> None:
        """Called by the trainer after every optimiser step with the step's learning rate."""
        self.adapter.after_optimizer_step(lr)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen trunk: no dropout, deterministic h_t
        return self
