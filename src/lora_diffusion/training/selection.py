"""Model selection on the validation split carved from train, and early stopping.

Every ``eval_every`` steps the trainer's ``evaluate`` callback scores the model on the
validation rows; ``select_metric`` names the value to maximise. The best state so far (the
trainable tensors) is kept in ``<output>/best/`` with its step and value; after
``early_stopping_patience`` evaluations in a row without an improvement of more than
``min_delta`` the run stops (never before ``min_steps``). At the end of training the best state is loaded back, so the saved
adapter and the single evaluation on the reported split are those of the selected step (the
reported split is never looked at during training). A resumed run reads ``best/`` back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..config import ConfigError
from ..utils.integrity import hash_files, verify_files
from ..utils.io import atomic_directory, atomic_write_json
from .checkpoint import trainable_state

BEST_DIR = "best"


@dataclass
class SelectionState:
    best_step: int = 0
    best_value: float | None = None
    evaluations_without_gain: int = 0
    stopped_at: int = 0  # the step at which early stopping ended the run (0: not stopped)


class Selector:
    """Keeps the best validation state of one run (see the module docstring)."""

    def __init__(self, output_dir: str | Path, metric: str, patience: int = 0, min_delta: float = 0.0,
                 min_steps: int = 0):
        self.dir = Path(output_dir) / BEST_DIR
        self.metric, self.patience, self.min_delta, self.min_steps = metric, patience, min_delta, min_steps
        self.state = SelectionState()

    def restore(self, step: int) -> None:
        """Read ``best/state.json`` back (a state written after ``step`` is not trusted)."""
        path = self.dir / "state.json"
        if path.is_file():
            saved = SelectionState(**{k: v for k, v in json.loads(path.read_text()).items() if k != "files_sha256"})
            if saved.best_step <= step and saved.stopped_at <= step:
                self.state = saved

    def update(self, step: int, scores: dict[str, float], model: torch.nn.Module, write: bool = True) -> bool:
        """Record an evaluation; keep the state if it is the best so far. True: stop now."""
        if self.metric not in scores:
            raise ConfigError(f"train.select_metric: {self.metric!r} is not among the validation scores "
                              f"{sorted(scores)}", field="train.select_metric")
        value, st = float(scores[self.metric]), self.state
        improved = st.best_value is None or value > st.best_value + self.min_delta
        if improved:
            st.best_value, st.best_step, st.evaluations_without_gain = value, step, 0
        else:
            st.evaluations_without_gain += 1
        stop = bool(self.patience) and st.evaluations_without_gain >= self.patience and step >= self.min_steps
        if stop:
            st.stopped_at = step
        if write and improved:  # tensors, their hash and the state replace the old best at once
            with atomic_directory(self.dir) as tmp:
                save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
                (tmp / "state.json").write_text(json.dumps({**asdict(st), "files_sha256": hash_files(tmp)}))
        elif write:
            sha = json.loads((self.dir / "state.json").read_text())["files_sha256"]
            atomic_write_json(self.dir / "state.json", {**asdict(st), "files_sha256": sha})
        return stop

    @property
    def stopped(self) -> bool:
        return self.state.stopped_at > 0

    def load_best(self, model: torch.nn.Module) -> None:
        """Put the selected step's trainable tensors back into ``model``."""
        if self.state.best_value is None or not (self.dir / "trainable.safetensors").is_file():
            return
        verify_files(self.dir, json.loads((self.dir / "state.json").read_text())["files_sha256"],
                     self.dir / "state.json")
        saved = load_file(str(self.dir / "trainable.safetensors"))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.copy_(saved[name].to(p.device, p.dtype))

    def summary(self) -> dict[str, Any]:
        st = self.state
        return {"select_metric": self.metric, "selected_step": st.best_step, "selected_value": st.best_value,
                "early_stopped_at": st.stopped_at or None, "patience": self.patience}
