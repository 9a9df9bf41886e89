"""Fine-tuning any registered method on a conditional-generation data set, through the one
trainer: base -> method model -> train -> save what the method trained -> accounting."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .backbone import DiffusionLM, unwrap_backbone
from .config import TrainConfig, require, to_dict
from .data.classification import encode_examples, pad_collate
from .data.tasks import TASKS, get_task
from .generation import denoising_accuracy, generation_accuracy
from .hub import load_base
from .methods import apply_method, method_config
from .methods.accounting import parameter_accounting
from .methods.head import attach_head
from .methods.persistence import base_fingerprint, save_method
from .objective import DiffusionObjective
from .training.checkpoint import list_checkpoints
from .training.trainer import Trainer
from .utils.io import atomic_write_json
from .utils.repro import provenance, seed_everything


def build_method_model(backbone: DiffusionLM, method: str, options: dict[str, Any] | None = None, seed: int = 0,
                       num_labels: int = 0, head_weight: float = 1.0):
    """(method model, fingerprint of the untouched base); the method's initialisation is seeded.
    ``num_labels`` > 0 attaches a classification head trained with the method."""
    fingerprint = base_fingerprint(backbone)
    seed_everything(seed)
    model = apply_method(method, backbone, method_config(method, options))
    if num_labels:
        attach_head(model, num_labels, head_weight)
    return model, fingerprint


def finetune(
    model: torch.nn.Module,
    train_data,
    cfg: TrainConfig,
    output_dir: str | Path,
    fingerprint: dict[str, Any],
    *,
    resume: bool = False,
    progress: bool = True,
    run_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``train_data`` (rows with input/generate/instruction masks), save the
    trained tensors to ``<output_dir>/adapter`` and return the training summary with the
    parameter accounting."""
    out = Path(output_dir)
    if list_checkpoints(out / "checkpoints") and not resume:
        raise FileExistsError(f"{out} already holds checkpoints of a run; pass --resume to continue it "
                              "or choose another --output-dir (nothing was overwritten)")
    backbone = unwrap_backbone(model)
    trainer = Trainer(
        model, DiffusionObjective(backbone.diffusion), train_data, cfg, out,
        collate=lambda rows: pad_collate(rows, backbone.pad_token_id),
        identity={"method": model.method, "base": fingerprint["weights_sha256"]},
        run_config={"method": model.method, "method_config": to_dict(model.cfg), **(run_config or {})},
        progress=progress,
    )
    summary = trainer.fit(resume=resume)
    if trainer.accelerator.is_main_process:  # one writer under DDP
        saved = save_method(trainer.unwrapped, out / "adapter", fingerprint)
        summary["accounting"] = parameter_accounting(trainer.unwrapped, saved)
        atomic_write_json(out / "training_summary.json", summary)
    trainer.accelerator.wait_for_everyone()
    return summary


@dataclass
class FinetuneConfig:
    """``lora-diffusion finetune``: one method on one task (SST-2 from GLUE TSV files for now)."""

    base: str = "minilm"
    method: str = "trajectory"
    method_options: dict[str, Any] = field(default_factory=dict)
    task: str = "sst2"
    data_dir: str = "../shared/data/sst2"
    eval_split: str = "dev"  # the reported split (TREC and AG News have test instead of dev)
    max_train_rows: int = 0
    eval_rows: int = 0
    validation_rows: int = 0  # held out of train (seeded) for model selection; never the reported split
    max_len: int = 64
    classification_head: bool = True  # the third accuracy: a linear head trained with the method
    head_loss_weight: float = 1.0
    output_dir: str = "runs/finetune"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=1000, lr=1e-4, warmup_steps=500, batch_size=64, micro_batch_size=16, save_every=250))

    def __post_init__(self) -> None:
        method_config(self.method, self.method_options)  # unknown method / bad option fails here
        require(self.task in TASKS, "task", f"unknown task {self.task!r}; known tasks: {sorted(TASKS)}")
        require(self.eval_split in ("dev", "test"), "eval_split", f"must be dev or test, got {self.eval_split!r}")
        require(self.max_train_rows >= 0, "max_train_rows", f"must be >= 0, got {self.max_train_rows}")
        require(self.eval_rows >= 0, "eval_rows", f"must be >= 0, got {self.eval_rows}")
        require(self.validation_rows >= 0, "validation_rows", f"must be >= 0, got {self.validation_rows}")
        require(self.max_len >= 8, "max_len", f"must be >= 8, got {self.max_len}")
        require(self.head_loss_weight >= 0, "head_loss_weight", f"must be >= 0, got {self.head_loss_weight}")


def split_validation(rows: list, count: int, seed: int) -> tuple[list, list]:
    """Hold ``count`` rows of train out (a seeded permutation) as the validation split."""
    if not count:
        return rows, []
    if count >= len(rows):
        raise ValueError(f"validation_rows {count} leaves no training rows (train has {len(rows)})")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    return [rows[i] for i in order[count:]], [rows[i] for i in order[:count]]


def run_finetune(cfg: FinetuneConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Load the base, fine-tune ``cfg.method`` on the task's train split, report generation
    accuracy on ``cfg.eval_split`` (never used for any choice here: the final checkpoint is reported)."""
    spec = get_task(cfg.task)
    task = spec.task
    train_rows, val_rows = split_validation(spec.load(cfg.data_dir, "train"), cfg.validation_rows, cfg.train.seed)
    dev_rows = spec.load(cfg.data_dir, cfg.eval_split)
    backbone = load_base(cfg.base)
    train = encode_examples(train_rows[: cfg.max_train_rows or None], task, backbone.tokenizer, cfg.max_len)
    dev = encode_examples(dev_rows[: cfg.eval_rows or None], task, backbone.tokenizer, cfg.max_len)
    val = encode_examples(val_rows, task, backbone.tokenizer, cfg.max_len) if val_rows else None
    model, fingerprint = build_method_model(backbone, cfg.method, cfg.method_options, seed=cfg.train.seed,
                                            num_labels=len(task.verbalizer) if cfg.classification_head else 0,
                                            head_weight=cfg.head_loss_weight)
    summary = finetune(model, train, cfg.train, cfg.output_dir, fingerprint, resume=resume, progress=progress,
                       run_config=to_dict(cfg))
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under DDP, rank 0 evaluates and writes
        return {"summary": summary}
    seed = cfg.train.seed
    train_probe = encode_examples(train_rows[:1000], task, backbone.tokenizer, cfg.max_len)
    start = time.perf_counter()
    dev_generation = generation_accuracy(model, dev, seed=seed)
    dev_generation["seconds_per_sample"] = (time.perf_counter() - start) / max(len(dev), 1)
    result = {"config": to_dict(cfg), "train_rows": len(train), "train_truncated": train.truncated,
              "eval_split": cfg.eval_split, "dev": dev_generation, "dev_rows": len(dev),
              "dev_denoising": denoising_accuracy(model, dev, seed=seed),
              "train_denoising": denoising_accuracy(model, train_probe, seed=seed),
              "summary": summary, **provenance(seed)}
    if val is not None:
        result["validation"] = {"generation": generation_accuracy(model, val, seed=seed),
                                "denoising": denoising_accuracy(model, val, seed=seed), "rows": len(val)}
    atomic_write_json(Path(cfg.output_dir) / "result.json", result)
    return result
