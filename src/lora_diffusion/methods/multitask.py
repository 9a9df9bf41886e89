"""One trunk pass for many tasks: every row of a batch gets its own task's trajectory adapter.

    h_t = trunk(x_t)                      once for the whole batch (B, L, D)
    h'_t[rows of task k] = adapter_k(h_t[rows of task k], t, c)

The adapters act after the frozen trunk, so a batch mixing tasks costs one trunk pass plus
one small adapter call per task present (rows are grouped by task with index_select; there
is no loop over rows). Used for serving (``generate`` with ``task_ids`` in the batch) and for
training on mixed-task data (the objective passes ``task_ids`` through).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..backbone import DiffusionLM
from ..config import ConfigError
from .trajectory import TrajectoryAdapter

Tensor = torch.Tensor


class MultiTaskTrajectoryModel(nn.Module):
    """A frozen ``DiffusionLM`` with one trajectory adapter per task, chosen per row."""

    method = "trajectory-multitask"

    def __init__(self, backbone: DiffusionLM, adapters: dict[str, TrajectoryAdapter]):
        super().__init__()
        if not adapters:
            raise ValueError("need at least one task adapter")
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        for name, adapter in adapters.items():  # they act on the last hidden state alone
            if adapter.mix is not None or adapter.deep is not None or adapter.side is not None:
                raise ConfigError(f"adapter {name!r}: one trunk pass for many tasks serves last-layer adapters; "
                                  "read='mix', deep layers and side networks are not supported", field="adapter")
        self.adapters = nn.ModuleDict(adapters)
        for adapter in adapters.values():
            adapter.bind(backbone)
        self.tasks = list(adapters)

    def task_ids(self, names: list[str]) -> Tensor:
        """Row task names -> (B,) long ids."""
        unknown = sorted(set(names) - set(self.tasks))
        if unknown:
            raise KeyError(f"no adapter for tasks {unknown}; loaded: {self.tasks}")
        return torch.tensor([self.tasks.index(n) for n in names], dtype=torch.long)

    def perturb(self, h: Tensor, steps: Tensor, task_ids: Tensor, instruction_mask: Tensor | None,
                input_ids: Tensor | None, select: Tensor | None = None) -> Tensor:
        """h' (B, L, D), or (N, D) at the ``select`` positions: each task's rows through that
        task's adapter, as one group."""
        if task_ids.shape != steps.shape or int(task_ids.min()) < 0 or int(task_ids.max()) >= len(self.tasks):
            raise ValueError(f"task_ids must be (B,) ids in 0..{len(self.tasks) - 1}, got {task_ids.tolist()}")
        out = torch.empty_like(h if select is None else h[select])
        row_of = None if select is None else select.nonzero()[:, 0]
        for k, adapter in enumerate(self.adapters.values()):
            rows = (task_ids == k).nonzero().squeeze(1)
            if not rows.numel():
                continue
            part = adapter(h[rows], steps[rows], None if instruction_mask is None else instruction_mask[rows],
                           None if input_ids is None else input_ids[rows], None if select is None else select[rows])
            where = rows if select is None else (task_ids[row_of] == k).nonzero().squeeze(1)
            out = out.index_copy(0, where, part)
        return out

    def forward(self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor, select: Tensor | None = None,
                instruction_mask: Tensor | None = None, return_hidden: bool = False, task_ids: Tensor | None = None):
        if task_ids is None:
            raise ValueError(f"a multi-task model needs task_ids (one of {self.tasks} per row)")
        hidden = self.backbone.hidden_states(input_ids, attention_mask, steps)  # one trunk pass
        hidden = self.perturb(hidden, steps, task_ids.to(hidden.device), instruction_mask, input_ids, select)
        logits = self.backbone.head(hidden)
        return (logits, hidden) if return_hidden else logits

    def regularization(self) -> dict[str, tuple[Tensor, float]]:
        out: dict[str, tuple[Tensor, float]] = {}
        for name, adapter in self.adapters.items():
            terms = adapter.regularizers()
            out[f"{name}_rank"] = (terms["rank"], adapter.rank_loss_weight)
            out[f"{name}_orth"] = (terms["orth"], adapter.cfg.lambda_orth)
        return out

    def after_optimizer_step(self, lr: float) -> None:
        """Each trained task adapter's proximal rank step (``TrajectoryAdapter.after_optimizer_step``)."""
        for adapter in self.adapters.values():
            if any(p.requires_grad for p in adapter.parameters()):
                adapter.after_optimizer_step(lr)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()
        return self

    @classmethod
    def from_saved(cls, directories: dict[str, str | Path], backbone: DiffusionLM) -> MultiTaskTrajectoryModel:
        """Load saved trajectory adapters (each checked against ``backbone``) onto one trunk."""
        from .persistence import load_method

        adapters = {}
        for task, directory in directories.items():
            model = load_method(directory, backbone)
            if model.method != "trajectory":
                raise ValueError(f"{directory} holds a {model.method!r} method, not a trajectory adapter")
            adapters[task] = model.adapter
        return cls(backbone, adapters).eval()
