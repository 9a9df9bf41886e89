"""Fine-tuning any registered method on a conditional-generation data set, through the one
trainer: base -> method model -> train -> save what the method trained -> accounting."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .backbone import DiffusionLM, unwrap_backbone
from .config import ConfigError, TrainConfig, defaults_tree, require, to_dict
from .data.encoding import EncodedExamples, ResponseFormat, pad_collate, tokenize_examples
from .data.examples import task_names
from .data.records import DataFileConfig
from .data.sources import Prepared, resolve_data, subsample
from .diffusion.sampler import PROMPT_ATTENTION
from .diffusion.schedules import SCHEDULES
from .generation import GenerationOptions, denoising_accuracy
from .hub import load_base
from .methods import apply_method, get_method, method_config
from .methods.accounting import parameter_accounting
from .methods.head import attach_head
from .methods.persistence import base_fingerprint, save_method, weights_digest
from .metrics import METRIC_NAMES
from .objective import DiffusionObjective
from .runs import clear_run, prepare_run
from .scoring import evaluate_encoded, write_predictions
from .training.checkpoint import list_checkpoints
from .training.schedule import check_batch
from .training.trainer import Trainer, TrainingInterrupted
from .utils.io import atomic_write_json
from .utils.repro import provenance, seed_everything
from .utils.resume import ResumeFile

log = logging.getLogger(__name__)
FINISHED = "result.json"  # a run is finished once its result is recorded
OUTPUTS = (FINISHED, "adapter", "training_summary.json")  # an earlier run's outputs: never replaced silently
# what --overwrite discards
CLEARED = (*OUTPUTS, "training_history.json", "tensorboard", "failed.json", "best", ".resume-eval.json")


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
    overwrite: bool = False,
    progress: bool = True,
    run_config: dict[str, Any] | None = None,
    adapter_extra: dict[str, Any] | None = None,
    evaluate=None,
) -> dict[str, Any]:
    """Train ``model`` on ``train_data`` (rows with input/generate/instruction masks), save the
    trained tensors to ``<output_dir>/adapter`` and return the training summary with the
    parameter accounting. An earlier run there is continued (``resume``), discarded
    (``overwrite``, once the data has been checked) or refused."""
    out = Path(output_dir)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: give one")
    if not resume and not overwrite:
        if list_checkpoints(out / "checkpoints"):
            raise FileExistsError(f"{out} already holds checkpoints of a run; pass --resume to continue it, "
                                  "--overwrite to start over, or choose another --output-dir (nothing was overwritten)")
        if (out / "adapter").exists():
            raise FileExistsError(f"{out} holds the adapter of an earlier run; pass --overwrite to replace it or "
                                  "choose another --output-dir (nothing was overwritten)")
    check_batch(cfg, len(train_data))
    if overwrite:
        clear_run(out, CLEARED)
    backbone = unwrap_backbone(model)
    trainer = Trainer(
        model, DiffusionObjective(backbone.diffusion), train_data, cfg, out,
        collate=lambda rows: pad_collate(rows, backbone.pad_token_id),
        identity={"method": model.method, "base": fingerprint["weights_sha256"]},
        run_config={"method": model.method, "method_config": to_dict(model.cfg), **(run_config or {})},
        progress=progress, evaluate=evaluate,
    )
    summary = trainer.fit(resume=resume)
    try:
        if trainer.accelerator.is_main_process:  # one writer under DDP
            saved = save_method(trainer.unwrapped, out / "adapter", fingerprint, extra=adapter_extra)
            summary["accounting"] = parameter_accounting(trainer.unwrapped, saved)
            atomic_write_json(out / "training_summary.json", summary)
    except KeyboardInterrupt:
        raise TrainingInterrupted.after_training(trainer.step, out) from None
    trainer.accelerator.wait_for_everyone()
    return summary


@dataclass
class FinetuneConfig:
    """``lora-diffusion finetune``: one method on one task, or on the user's own files.

    Data: a registered ``task`` read from ``data_dir`` (default ``data_root/<task folder>``),
    or ``data_file`` (JSONL / CSV / TSV, fields and template in ``data``) with an optional
    ``eval_file``. ``response`` budgets left at 0 take the task's (or, for files, the data's).
    ``eval_split`` "" is the task's reported split (GLUE dev, TREC / AG News test, ...)."""

    base: str = "minilm"
    method: str = "trajectory"
    method_options: dict[str, Any] = field(default_factory=dict)
    task: str = "sst2"
    data_dir: str = ""
    data_root: str = "../shared/data"
    data_file: str = ""
    eval_file: str = ""
    data: DataFileConfig = field(default_factory=DataFileConfig)
    metric: str = ""  # "" = the task's; users' files: accuracy (exact match)
    eval_split: str = ""
    max_train_rows: int = 0
    eval_rows: int = 0  # 0 = all; else a fixed seeded sample (seed 0, the same for every run)
    validation_rows: int = 0  # held out of train (seeded) for model selection; never the reported split
    diffusion_steps: int = 0  # T for training and sampling (0: the base's own)
    diffusion_schedule: str = ""  # noise schedule ("": the base's own)
    prompt_attention: str = "full"  # or "prefix": prompt positions attend only to the prompt (prompt_cache.py)
    response: ResponseFormat = field(default_factory=ResponseFormat)
    sampling: GenerationOptions = field(default_factory=GenerationOptions)
    classification_head: bool = True  # the third accuracy: a linear head trained with the method
    head_loss_weight: float = 1.0
    output_dir: str = "runs/finetune"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=1000, lr=1e-4, warmup_steps=500, batch_size=64, micro_batch_size=16, save_every=250))
    # multi-task (``finetune_multi.py``, method trajectory-composed): several tasks or several files
    tasks: list[str] = field(default_factory=list)
    data_files: list[str] = field(default_factory=list)
    eval_files: list[str] = field(default_factory=list)
    init_adapters: dict[str, str] = field(default_factory=dict)  # task -> saved trajectory adapter

    def __post_init__(self) -> None:
        if self.tasks or self.data_files:
            self._check_multitask()
            return
        method_config(self.method, self.method_options)  # unknown method / bad option fails here
        require(bool(self.task) or bool(self.data_file) or bool(self.eval_file), "task",
                "give a task or a data_file")
        if self.task and not self.data_file:
            require(self.task in task_names(), "task", f"unknown task {self.task!r}; known tasks: {task_names()}")
        require(self.metric == "" or self.metric in METRIC_NAMES, "metric",
                f"unknown metric {self.metric!r}; known: {sorted(METRIC_NAMES)}")
        require(self.max_train_rows >= 0, "max_train_rows", f"must be >= 0, got {self.max_train_rows}")
        require(self.eval_rows >= 0, "eval_rows", f"must be >= 0, got {self.eval_rows}")
        require(self.validation_rows >= 0, "validation_rows", f"must be >= 0, got {self.validation_rows}")
        require(self.diffusion_steps >= 0, "diffusion_steps", f"must be >= 0, got {self.diffusion_steps}")
        require(not self.diffusion_schedule or self.diffusion_schedule in SCHEDULES, "diffusion_schedule",
                f"unknown schedule {self.diffusion_schedule!r}; choose from {sorted(SCHEDULES)}")
        self._check_attention()
        require(not self.train.select_metric or self.validation_rows > 0, "train.select_metric",
                "model selection needs a validation split carved from train: set validation_rows > 0")
        require(self.head_loss_weight >= 0, "head_loss_weight", f"must be >= 0, got {self.head_loss_weight}")

    def _check_multitask(self) -> None:
        require(self.method == "trajectory-composed", "method",
                f"several tasks train the method trajectory-composed, not {self.method!r}")
        require(not (self.tasks and self.data_files), "tasks", "give a task list or data files, not both")
        unknown = [t for t in self.tasks if t not in task_names()]
        require(not unknown, "tasks", f"unknown tasks {unknown}; known tasks: {task_names()}")
        require(len(set(self.tasks)) == len(self.tasks), "tasks", f"tasks repeat: {self.tasks}")
        require(not self.eval_files or len(self.eval_files) == len(self.data_files), "eval_files",
                f"need one per data file ({len(self.data_files)}), got {len(self.eval_files)}")
        require("tasks" not in self.method_options, "method_options.tasks", "the task list sets the tasks")
        names = self.tasks or ["?"] * len(self.data_files)
        method_config(self.method, {**self.method_options, "tasks": [f"t{k}" for k in range(len(names))]})
        require(self.metric == "" or self.metric in METRIC_NAMES, "metric",
                f"unknown metric {self.metric!r}; known: {sorted(METRIC_NAMES)}")
        for name in ("max_train_rows", "eval_rows", "validation_rows"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        self._check_attention()

    def _check_attention(self) -> None:
        require(self.prompt_attention in PROMPT_ATTENTION, "prompt_attention",
                f"must be one of {list(PROMPT_ATTENTION)}, got {self.prompt_attention!r}")

    def data_source(self, tokenizer=None, max_positions: int = 512, need_train: bool = True) -> Prepared:
        return resolve_data(task="" if self.data_file else self.task, data_dir=self.data_dir,
                            data_root=self.data_root, data_file=self.data_file, eval_file=self.eval_file,
                            eval_split=self.eval_split, file_cfg=self.data, metric=self.metric, fmt=self.response,
                            tokenizer=tokenizer, max_positions=max_positions, need_train=need_train)


def set_prompt_attention(backbone: DiffusionLM, attention: str) -> None:
    """Train (and score) ``backbone`` with this prompt attention (``prompt_cache.py``): checked
    against its family (one line naming ``prompt_attention``), recorded with the adapter."""
    from .prompt_cache import check_attention

    check_attention(backbone, attention)
    backbone.prompt_attention = attention


def split_validation(rows: list, count: int, seed: int) -> tuple[list, list]:
    """Hold ``count`` rows of train out (a seeded permutation) as the validation split."""
    if not count:
        return rows, []
    if count >= len(rows):
        raise ValueError(f"validation_rows {count} leaves no training rows (train has {len(rows)})")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    return [rows[i] for i in order[count:]], [rows[i] for i in order[:count]]


def max_positions(backbone: DiffusionLM) -> int:
    return int(getattr(backbone.mlm.config, "max_position_embeddings", 0) or 512)


CUT_WARNING = 0.05  # share of prompts cut to the budget above which encoding warns


def encode_for(prepared: Prepared, examples: list, tokenizer, positions: int) -> EncodedExamples:
    """The one encoder, with the run's format; a row longer than the base's positions is refused,
    and more than ``CUT_WARNING`` of the prompts over the prompt budget is a warning (they keep
    their first and last tokens and lose their middle: for a sentence pair, the second sentence)."""
    fmt = prepared.format
    need = fmt.max_prompt_len + fmt.response_budget + 3
    if need > positions:
        raise ConfigError(f"response.max_prompt_len {fmt.max_prompt_len} + response_budget {fmt.response_budget} "
                          f"+ 3 special tokens = {need} exceeds the base's {positions} positions")
    encoded = tokenize_examples(examples, tokenizer, fmt, prepared.label_words or None)
    if examples and encoded.truncated > CUT_WARNING * len(examples):
        log.warning("%s: %d of %d prompts (%.0f%%) are longer than the prompt budget of %d tokens and lose their "
                    "middle; a larger budget: --set response.max_prompt_len=N", prepared.name, encoded.truncated,
                    len(examples), 100 * encoded.truncated / len(examples), fmt.max_prompt_len)
    return encoded


def task_format(prepared: Prepared, cfg: FinetuneConfig) -> dict[str, Any]:
    """What ``generate`` / ``evaluate`` need to lay out prompts as in training (saved with the adapter)."""
    return {**prepared.describe(), "response": to_dict(prepared.format), "data": to_dict(cfg.data),
            "task": cfg.task if not cfg.data_file else ""}


def run_finetune(cfg: FinetuneConfig, resume: bool = False, progress: bool = True,
                 overwrite: bool = False) -> dict[str, Any]:
    """Load the base, fine-tune ``cfg.method`` on the training examples, report the task's
    metrics on the reported split (never used for any choice here: the final checkpoint is
    reported) and write the per-example predictions beside ``result.json``.

    The output directory is checked first (``runs.prepare_run``): a finished run is replaced
    only with ``overwrite``; ``resume`` continues an interrupted run with the same
    configuration, and of a finished one returns its recorded result, writing nothing.
    Several tasks (``tasks`` / ``data_files``) go to ``finetune_multi.run_multitask_finetune``."""
    if cfg.tasks or cfg.data_files:
        from .finetune_multi import run_multitask_finetune

        return run_multitask_finetune(cfg, resume=resume, progress=progress, overwrite=overwrite)
    config = {**to_dict(cfg), "method_config": to_dict(method_config(cfg.method, cfg.method_options))}
    defaults = {**defaults_tree(FinetuneConfig), "method_config": defaults_tree(get_method(cfg.method).config_cls)}
    state = prepare_run(cfg.output_dir, resume=resume, overwrite=overwrite, config=config, defaults=defaults,
                        finished_marker=FINISHED, outputs=OUTPUTS, command="finetune")
    if state == "finished":
        log.warning("%s: this run is already finished; nothing was trained or written", cfg.output_dir)
        return {**json.loads((Path(cfg.output_dir) / FINISHED).read_text()), "already_finished": True}
    backbone = load_base(cfg.base)
    backbone.set_process(cfg.diffusion_steps, cfg.diffusion_schedule)
    set_prompt_attention(backbone, cfg.prompt_attention)
    sampler = cfg.sampling.sampler(backbone.diffusion.num_steps, backbone.prompt_attention)  # refused before training
    tok, positions = backbone.tokenizer, max_positions(backbone)
    prepared = cfg.data_source(tok, positions)
    seed = cfg.train.seed
    train_ex, val_ex = split_validation(prepared.train, cfg.validation_rows, seed)
    train = encode_for(prepared, train_ex[: cfg.max_train_rows or None], tok, positions)
    dev = encode_for(prepared, subsample(prepared.eval, cfg.eval_rows), tok, positions) if prepared.eval else None
    val = encode_for(prepared, val_ex, tok, positions) if val_ex else None
    labels = len(prepared.label_words) if (cfg.classification_head and prepared.kind == "classification") else 0
    model, fingerprint = build_method_model(backbone, cfg.method, cfg.method_options, seed=seed,
                                            num_labels=labels, head_weight=cfg.head_loss_weight)
    scorer = (validation_scorer(val, prepared.metric, sampler, cfg.sampling.batch_size, seed)
              if val is not None and cfg.train.eval_every else None)
    summary = finetune(model, train, cfg.train, cfg.output_dir, fingerprint, resume=resume, overwrite=overwrite,
                       progress=progress, run_config=to_dict(cfg), adapter_extra={"task_format": task_format(prepared, cfg)},
                       evaluate=scorer)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under DDP, rank 0 evaluates and writes
        return {"summary": summary}
    try:
        return _evaluate_and_record(cfg, prepared, model, summary, train, train_ex, dev, val)
    except KeyboardInterrupt:
        raise TrainingInterrupted.after_training(summary["steps"], cfg.output_dir) from None


def validation_scorer(val, metric: str, sampler, batch_size: int, seed: int):
    """The trainer's ``evaluate`` callback on the validation rows carved from train: the task's
    metrics (``primary`` = its main one), generation accuracy for classification, and the
    denoising accuracy. The same rows and seed at every evaluation: a learning curve."""

    def score(model: torch.nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            scored = evaluate_encoded(model, val, metric, sampler, batch_size, seed)
            out = {k: float(v) for k, v in scored["metrics"].items() if isinstance(v, (int, float))}
            out["primary"] = float(scored["metrics"][scored["primary"]])
            if "accuracy" in scored:
                out["generation_accuracy"] = float(scored["accuracy"])
            out["denoising_accuracy"] = float(denoising_accuracy(model, val, seed=seed)["accuracy"])
        finally:
            model.train(was_training)
        return out

    return score


def _evaluate_and_record(cfg: FinetuneConfig, prepared: Prepared, model, summary: dict[str, Any], train, train_ex,
                         dev, val) -> dict[str, Any]:
    """The reported split's metrics and predictions, validation, and ``result.json`` (last).
    The generation's finished batches are kept in ``.resume-eval.json`` (keyed by the trained
    weights, the sampler and the rows) until ``result.json`` is written: an interrupted
    evaluation of a resumed run goes on from its next batch."""
    backbone = unwrap_backbone(model)
    tok, positions, seed = backbone.tokenizer, max_positions(backbone), cfg.train.seed
    sampler = cfg.sampling.sampler(backbone.diffusion.num_steps, backbone.prompt_attention)
    bs, out = cfg.sampling.batch_size, Path(cfg.output_dir)
    key = {"weights_sha256": weights_digest(model), "sampler": vars(sampler), "batch_size": bs, "seed": seed,
           "dev": [len(dev), prepared.eval_split] if dev is not None else None,
           "validation": len(val) if val is not None else None}
    kept = ResumeFile(out / ".resume-eval.json", key)
    probe = encode_for(prepared, train_ex[: 1000 if prepared.kind == "classification" else 200], tok, positions)
    result = {"config": to_dict(cfg), "task": prepared.describe(), "train_rows": len(train),
              "train_truncated": train.truncated, "train_truncated_responses": train.truncated_responses,
              "eval_split": prepared.eval_split, "dev": None, "dev_rows": 0,
              "train_denoising": denoising_accuracy(model, probe, seed=seed), "summary": summary,
              **provenance(seed, base=unwrap_backbone(model).source)}
    if dev is not None:
        scored = evaluate_encoded(model, dev, prepared.metric, sampler, bs, seed, resume=kept, section="dev")
        write_predictions(out / f"predictions_{prepared.eval_split}.jsonl", scored.pop("predictions"))
        result.update(dev=scored, dev_rows=len(dev), dev_truncated=dev.counts(),
                      dev_denoising=denoising_accuracy(model, dev, seed=seed))
    if val is not None:
        scored = evaluate_encoded(model, val, prepared.metric, sampler, bs, seed, resume=kept, section="validation")
        scored.pop("predictions")
        result["validation"] = {"generation": scored, "denoising": denoising_accuracy(model, val, seed=seed),
                                "rows": len(val)}
    atomic_write_json(out / "result.json", result)
    kept.remove()
    return result
