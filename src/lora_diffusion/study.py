"""``lora-diffusion study``: methods x seeds on one task, idempotent and resumable.

Each run lives in ``<output_dir>/<method>/seed-<n>/`` with its ``result.json``; a finished run
(result present) is skipped, an interrupted one resumes from its newest checkpoint. Every
method gets the same step budget, batch, data order (per seed) and evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import TrainConfig, require
from .finetune import FinetuneConfig, run_finetune
from .methods import registered_methods
from .training.checkpoint import list_checkpoints

log = logging.getLogger(__name__)


@dataclass
class StudyConfig:
    base: str = "minilm"
    task: str = "sst2"
    data_dir: str = "../shared/data/sst2"
    eval_split: str = "dev"
    methods: list[str] = field(default_factory=lambda: ["full", "trajectory", "lora", "adapter", "bitfit", "prefix"])
    seeds: list[int] = field(default_factory=lambda: list(range(42, 52)))
    method_options: dict[str, Any] = field(default_factory=dict)  # method -> options
    method_lr: dict[str, Any] = field(default_factory=dict)  # method -> learning rate (else train.lr)
    max_train_rows: int = 0
    validation_rows: int = 500
    eval_rows: int = 0
    classification_head: bool = True
    head_loss_weight: float = 1.0
    output_dir: str = "runs/study"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=1000, lr=1e-4, warmup_steps=500, batch_size=64, micro_batch_size=16, save_every=100))

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in registered_methods()]
        require(not unknown, "methods", f"unknown {unknown}; registered: {registered_methods()}")
        require(len(self.seeds) >= 1, "seeds", "need at least one seed")
        require(all(s >= 0 for s in self.seeds), "seeds", f"must be >= 0, got {self.seeds}")
        for m in list(self.method_options) + list(self.method_lr):
            require(m in self.methods, "method_options", f"{m!r} is not one of the study's methods {self.methods}")

    def run_config(self, method: str, seed: int) -> FinetuneConfig:
        train = replace(self.train, seed=seed, lr=float(self.method_lr.get(method, self.train.lr)))
        return FinetuneConfig(
            base=self.base, method=method, method_options=dict(self.method_options.get(method, {})),
            task=self.task, data_dir=self.data_dir, eval_split=self.eval_split,
            max_train_rows=self.max_train_rows, validation_rows=self.validation_rows, eval_rows=self.eval_rows,
            classification_head=self.classification_head,
            head_loss_weight=self.head_loss_weight, output_dir=str(self.run_dir(method, seed)), train=train)

    def run_dir(self, method: str, seed: int) -> Path:
        return Path(self.output_dir) / method / f"seed-{seed}"


def run_study(cfg: StudyConfig, progress: bool = True) -> list[Path]:
    """Run every (method, seed) not finished yet; return the result files."""
    results = []
    for method in cfg.methods:
        for seed in cfg.seeds:
            run = cfg.run_config(method, seed)
            result = Path(run.output_dir) / "result.json"
            if result.is_file():
                log.info("study: %s seed %d already done, skipped", method, seed)
            else:
                resume = bool(list_checkpoints(Path(run.output_dir) / "checkpoints"))
                print(f"[study] {method} seed {seed}{' (resuming)' if resume else ''} -> {run.output_dir}")
                run_finetune(run, resume=resume, progress=progress)
            results.append(result)
    return results
