"""``lora-diffusion evaluate``: a saved adapter (or a base) on a task split or a labelled file,
without training.

Writes ``metrics.json`` (the task's metrics, the config, the adapter, the data description
and provenance) and ``predictions.jsonl`` (one line per example) to its own output directory
only: never into the adapter's directory, never over an earlier result unless ``overwrite``.
Finished batches are kept there (``.resume-eval.json``) until ``metrics.json`` is written, so an
interrupted evaluation run again with the same inputs goes on from its next batch.
Rows are laid out as the adapter was trained (its recorded response format) when it was
trained on the same task or on users' files; otherwise with the task's own format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import Pipeline, pipeline_for
from .backbone import unwrap_backbone
from .config import ConfigError, require, to_dict
from .data.encoding import ResponseFormat, tokenize_examples
from .data.examples import DataError, Example, task_names
from .data.records import DataFileConfig
from .data.sources import resolve_data, subsample
from .generation import GenerationOptions
from .methods.persistence import weights_digest
from .metrics import METRIC_NAMES
from .scoring import evaluate_encoded, write_predictions
from .utils.io import atomic_write_json, check_writable_dir
from .utils.repro import provenance
from .utils.resume import ResumeFile

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
RESUME_FILE = ".resume-eval.json"  # finished batches, until metrics.json is written


@dataclass
class EvaluateConfig:
    adapter: str = ""  # a saved adapter directory; or leave empty and give base
    base: str = ""  # the base (alone, or instead of the adapter's recorded base)
    task: str = ""
    split: str = ""  # "" = the task's reported split
    data_dir: str = ""
    data_root: str = "../shared/data"
    data_file: str = ""  # a labelled file (JSONL / CSV / TSV) instead of a task
    data: DataFileConfig = field(default_factory=DataFileConfig)
    metric: str = ""  # "" = the task's; files: accuracy (exact match)
    eval_rows: int = 0  # 0 = all; else a fixed seeded sample (seed 0)
    output_dir: str = ""
    overwrite: bool = False
    sampling: GenerationOptions = field(default_factory=GenerationOptions)

    def __post_init__(self) -> None:
        require(bool(self.adapter) or bool(self.base), "adapter", "give an adapter directory or a base")
        require(bool(self.task) != bool(self.data_file), "task", "give exactly one of a task or a data_file")
        require(not self.task or self.task in task_names(), "task",
                f"unknown task {self.task!r}; known tasks: {task_names()}")
        require(self.metric == "" or self.metric in METRIC_NAMES, "metric",
                f"unknown metric {self.metric!r}; known: {sorted(METRIC_NAMES)}")
        require(self.eval_rows >= 0, "eval_rows", f"must be >= 0, got {self.eval_rows}")
        require(bool(self.output_dir), "output_dir", "give an output directory for metrics.json and predictions")


def check_output(out: Path, adapter: str, overwrite: bool) -> None:
    """Refuse, before any work, an output inside the adapter, an existing result without
    ``overwrite``, or a directory that cannot be written."""
    if adapter:
        a = Path(adapter).resolve()
        if out.resolve() == a or a in out.resolve().parents:
            raise ConfigError(f"output_dir {out} is inside the adapter directory {adapter}: choose another")
    if (out / METRICS_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out / METRICS_FILE} exists: pass --overwrite to replace it (nothing was written)")
    check_writable_dir(out, "output_dir")


def with_labels(examples: list[Example], words: dict[int, str], source: str) -> list[Example]:
    """Give examples from a file the label id of their response (a classification adapter)."""
    ids = {w: k for k, w in words.items()}
    out = []
    for ex in examples:
        if ex.label is None and ex.response.strip().lower() not in ids:
            raise DataError(f"{ex.id or source}: response {ex.response!r} is not one of the adapter's label "
                            f"words {sorted(ids)}")
        out.append(ex if ex.label is not None else Example(ex.prompt, ex.response, ex.references,
                                                           ids[ex.response.strip().lower()], ex.id))
    return out


def run_evaluate(cfg: EvaluateConfig, pipe: Pipeline | None = None) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    check_output(out, cfg.adapter, cfg.overwrite)
    pipe = pipe or pipeline_for(cfg.adapter, cfg.base)
    tok = pipe.tokenizer
    prepared = resolve_data(task=cfg.task, data_dir=cfg.data_dir, data_root=cfg.data_root, data_file="",
                            eval_file=cfg.data_file, eval_split=cfg.split, file_cfg=cfg.data, metric=cfg.metric,
                            fmt=ResponseFormat(), tokenizer=tok, need_train=False)
    saved = pipe.task_format
    same = bool(saved) and (saved.get("task") == cfg.task if cfg.task else not saved.get("task"))
    fmt = pipe.response_format() if same else prepared.format
    if cfg.sampling.response_length and prepared.kind != "classification":
        fmt = ResponseFormat(cfg.sampling.response_length, fmt.max_prompt_len, fmt.prompt_tail_tokens,
                             fmt.end_token, fmt.fill_token)
    # the adapter's label words apply to a labelled file, never to a registered task of another kind
    # (a classification adapter scored on a free-text task, such as a zero-shot composite task)
    words = prepared.label_words or (pipe.label_words if not cfg.task else {})
    if prepared.label_words and pipe.label_words and prepared.label_words != pipe.label_words:
        raise ConfigError(f"task {cfg.task} has label words {prepared.label_words}; the adapter was trained "
                          f"with {pipe.label_words}")
    examples = subsample(prepared.eval, cfg.eval_rows)
    if words and not prepared.label_words:
        examples = with_labels(examples, words, cfg.data_file)
    data = tokenize_examples(examples, tok, fmt, words or None)
    sampler = pipe.sampler(cfg.sampling)  # the adapter's own prompt attention unless one is given
    key = {"weights_sha256": weights_digest(pipe.model), "rows": len(data), "sampler": vars(sampler),
           "config": {k: v for k, v in to_dict(cfg).items() if k not in ("output_dir", "overwrite")}}
    kept = ResumeFile(out / RESUME_FILE, key)  # an interrupted evaluation goes on from its next batch
    scored = evaluate_encoded(pipe.model, data, prepared.metric, sampler, cfg.sampling.batch_size, cfg.sampling.seed,
                              resume=kept, section="eval")
    predictions = scored.pop("predictions")
    result = {"config": to_dict(cfg), "adapter": cfg.adapter or None, "base": cfg.base or None,
              "data": prepared.describe(), "rows": data.counts(), "response_format": to_dict(data.format),
              "sampler": {**to_dict(cfg.sampling), "prompt_attention": sampler.prompt_attention},  # as resolved
              **scored, **provenance(cfg.sampling.seed, base=unwrap_backbone(pipe.model).source)}
    write_predictions(out / PREDICTIONS_FILE, predictions)
    atomic_write_json(out / METRICS_FILE, result)
    kept.remove()
    return result
