"""Multi-task composition of trajectory adapters on one frozen trunk (paper Eqs. 21-23,
Algorithm 1 lines 3-11): one trunk pass per step, the task perturbations superposed.

    h_t   = trunk(x_t)                                             once per step (B, L, D)
    w     = weights(c) in R^M                                      (B, M), per row
    h'_t  = h_t + sum_{j=1..M} w_j delta_t^(j),   delta_t^(j) = sigma(t) sum_i g_i^(j)(h_t, t, c)   (Eq. 22)

Modes for w (``ComposedConfig.mode``):
- ``router``: w = softmax(Router(Enc(c))) (Eq. 21, ``methods/router.py``);
- ``uniform``: w_j = 1 / M;
- ``weights``: the user's fixed w (any reals: task arithmetic in trajectory space);
- ``oracle``: w = onehot(task of the row), from ``task_ids`` in the batch (serving; training).

Training (``model.train()``) always routes each row to its own task's modules (oracle) and,
with a router, adds Eq. 23's -log w_j term (``regularization()["router"]``, computed in the
forward of that step): joint training of M task modules and the router on mixed-task
batches. With ``freeze_adapters`` only the router trains (router over frozen, separately
trained adapters). Saved like any method (``trajectory-composed``): every task adapter and
the router, whether trained here or frozen (``saved_state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..backbone import DiffusionLM
from ..config import require
from .multitask import MultiTaskTrajectoryModel
from .router import ROUTER_WIDTH, Router, router_accuracy, router_loss
from .trajectory import TrajectoryAdapter, TrajectoryConfig

Tensor = torch.Tensor
MODES = ("router", "uniform", "weights", "oracle")


@dataclass
class ComposedConfig:
    tasks: list[str] = field(default_factory=lambda: ["task"])
    mode: str = "uniform"
    weights: list[float] = field(default_factory=list)  # mode "weights": one per task
    router: bool = False
    router_width: int = ROUTER_WIDTH
    router_loss_weight: float = 1.0
    freeze_adapters: bool = False  # train the router alone over the task adapters
    adapter: TrajectoryConfig = field(default_factory=TrajectoryConfig)  # every task's adapter config

    def __post_init__(self) -> None:
        require(len(self.tasks) >= 1, "tasks", "need at least one task")
        require(self.adapter.read == "last" and not self.adapter.deep and not self.adapter.side_dim, "adapter",
                "composition superposes last-layer adapters: read='mix', deep layers and side networks are not "
                "supported")
        require(len(set(self.tasks)) == len(self.tasks), "tasks", f"task names repeat: {self.tasks}")
        require(all(isinstance(t, str) and t and "." not in t for t in self.tasks), "tasks",
                f"task names must be non-empty and hold no '.', got {self.tasks}")
        require(self.mode in MODES, "mode", f"must be one of {MODES}, got {self.mode!r}")
        if self.mode == "weights":
            require(len(self.weights) == len(self.tasks), "weights",
                    f"need one weight per task ({len(self.tasks)}: {self.tasks}), got {self.weights}")
        else:
            require(not self.weights, "weights", f"only mode 'weights' takes weights (mode is {self.mode!r})")
        require(self.mode != "router" or self.router, "router", "mode 'router' needs a router (router=true)")
        require(self.router_width >= 1, "router_width", f"must be >= 1, got {self.router_width}")
        require(self.router_loss_weight >= 0, "router_loss_weight", f"must be >= 0, got {self.router_loss_weight}")
        require(not self.freeze_adapters or self.router, "freeze_adapters", "freezing the adapters leaves only "
                "a router to train: set router=true")


def adapter_delta(adapter: TrajectoryAdapter, h: Tensor, steps: Tensor, instruction_mask: Tensor | None,
                  input_ids: Tensor | None, select: Tensor | None = None) -> Tensor:
    """delta_t = sigma(t) sum_i g_i(h_t, t, c): (B, L, D), or (N, D) at the ``select`` positions
    (the same values as ``adapter(h, ..., select) - h[select]``, computed without the subtraction)."""
    if select is None:
        return adapter.delta(h, steps, instruction_mask, input_ids)
    return adapter.selected_delta(h, steps, select, instruction_mask, input_ids)


class ComposedTrajectoryModel(MultiTaskTrajectoryModel):
    """M trajectory adapters (one per task) and an optional router on one frozen trunk."""

    method = "trajectory-composed"

    def __init__(self, backbone: DiffusionLM, cfg: ComposedConfig):
        heads = getattr(backbone.mlm.config, "num_attention_heads", None) or getattr(backbone.mlm.config, "n_heads", 12)
        adapters = {t: TrajectoryAdapter(cfg.adapter, backbone.hidden_size, backbone.diffusion.num_steps, heads)
                    for t in cfg.tasks}
        super().__init__(backbone, adapters)
        self.cfg = cfg
        self.router = Router(backbone.hidden_size, len(cfg.tasks), cfg.router_width) if cfg.router else None
        self.register_buffer("fixed_weights", torch.tensor(cfg.weights or [1.0 / len(cfg.tasks)] * len(cfg.tasks),
                                                           dtype=torch.float32), persistent=False)
        self.freeze_adapters(cfg.freeze_adapters)
        self.last_router: dict[str, Tensor | float] = {}

    def freeze_adapters(self, frozen: bool = True) -> None:
        for p in self.adapters.parameters():
            p.requires_grad_(not frozen)

    def saved_state(self) -> dict[str, Tensor]:
        """Every task adapter's tensors and the router's (frozen ones included)."""
        return {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if not n.startswith("backbone.")}

    def task_weights(self, h: Tensor, task_ids: Tensor | None, instruction_mask: Tensor | None,
                     mode: str | None = None) -> Tensor:
        """w (B, M) for the given (default: configured) mode."""
        mode = mode or self.cfg.mode
        b, m = h.shape[0], len(self.tasks)
        if mode == "oracle":
            if task_ids is None:
                raise ValueError("composition mode 'oracle' needs task_ids in the batch (one task per row)")
            return nn.functional.one_hot(task_ids.long(), m).to(h.dtype)
        if mode == "router":
            return self.router.weights(h, instruction_mask).to(h.dtype)
        if mode == "uniform":
            return h.new_full((b, m), 1.0 / m)
        return self.fixed_weights.to(h.dtype).expand(b, m)

    def superpose(self, h: Tensor, steps: Tensor, w: Tensor, instruction_mask: Tensor | None,
                  input_ids: Tensor | None, select: Tensor | None = None) -> Tensor:
        """Eq. 22: h + sum_j w_j delta^(j), (B, L, D) or (N, D) at ``select``; an adapter whose
        weight is 0 in every row is not run (so all-zero weights give the base exactly)."""
        base = h if select is None else h[select]
        row_w = w if select is None else w[select.nonzero()[:, 0]]  # (B, M) or (N, M)
        out = base
        for j, adapter in enumerate(self.adapters.values()):
            wj = row_w[:, j]
            if not bool((wj != 0).any()):
                continue
            d = adapter_delta(adapter, h, steps, instruction_mask, input_ids, select)
            out = out + (wj[:, None, None] if select is None else wj[:, None]) * d
        return out

    def forward(self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor, select: Tensor | None = None,
                instruction_mask: Tensor | None = None, return_hidden: bool = False, task_ids: Tensor | None = None):
        """Logits (N, V) at ``select`` ((B, L, V) without): one trunk pass, then the composed
        perturbation (training: each row's own task and the router's loss)."""
        hidden = self.backbone.hidden_states(input_ids, attention_mask, steps)  # the one trunk pass
        if task_ids is not None:
            task_ids = task_ids.to(hidden.device)
        elif len(self.tasks) == 1:  # one task: every row is its row
            task_ids = torch.zeros(input_ids.shape[0], dtype=torch.long, device=hidden.device)
        if self.training and self.router is not None and task_ids is not None:  # Eq. 23's routing term
            logits = self.router(hidden, instruction_mask)
            self.last_router = {"loss": router_loss(logits, task_ids), "accuracy": router_accuracy(logits, task_ids)}
        if self.training or self.cfg.mode == "oracle":
            if task_ids is None:
                raise ValueError(f"training or oracle routing needs task_ids (one of {self.tasks} per row)")
            hidden = self.perturb(hidden, steps, task_ids, instruction_mask, input_ids, select)
        else:
            w = self.task_weights(hidden, task_ids, instruction_mask)
            hidden = self.superpose(hidden, steps, w, instruction_mask, input_ids, select)
        logits = self.backbone.head(hidden)
        return (logits, hidden) if return_hidden else logits

    def regularization(self) -> dict[str, tuple[Tensor, float]]:
        """The task adapters' R_rank / R_orth (those that train) and Eq. 23's router term of the
        last forward (weight ``router_loss_weight``); the router's accuracy on that batch is
        logged with weight 0 (``reg_router_accuracy``)."""
        out = {} if self.cfg.freeze_adapters else super().regularization()
        if self.router is not None and "loss" in self.last_router:
            loss = self.last_router.pop("loss")
            out["router"] = (loss, self.cfg.router_loss_weight)
            out["router_accuracy"] = (loss.new_tensor(self.last_router.pop("accuracy")), 0.0)
        return out


def compose_adapters(backbone: DiffusionLM, adapters: dict[str, TrajectoryAdapter], mode: str = "uniform",
                     weights: list[float] | None = None, router: Router | None = None) -> ComposedTrajectoryModel:
    """A composed model over already trained adapters (all of one config), copied in."""
    configs = {name: a.cfg for name, a in adapters.items()}
    first = next(iter(configs.values()))
    differ = [name for name, c in configs.items() if c != first]
    if differ:
        raise ValueError(f"adapters {differ} have another trajectory config than {next(iter(configs))}: "
                         "superposition needs one config (same ranks, encoder, dims)")
    cfg = ComposedConfig(tasks=list(adapters), mode=mode, weights=list(weights or []), router=router is not None,
                         router_width=router.mlp[0].out_features if router is not None else ROUTER_WIDTH,
                         adapter=first)
    model = ComposedTrajectoryModel(backbone, cfg)
    with torch.no_grad():
        for name, adapter in adapters.items():
            model.adapters[name].load_state_dict(adapter.state_dict())
        if router is not None:
            if router.num_tasks != len(adapters):
                raise ValueError(f"the router routes over {router.num_tasks} tasks, not {len(adapters)}")
            model.router.load_state_dict(router.state_dict())
    return model.eval()
