"""Where a run's examples come from: a registered task, or the user's own files.

``resolve_data`` turns the data fields of a run's config (task / data_dir / data_root, or
data_file / eval_file with their field names and template) into a ``Prepared`` bundle: the
train and eval examples, the task's kind, metric and label words, and the response format
with every budget filled in. Users' files are free text: their response budget, unless
given, is the longest training response plus the end token rounded up to a multiple of 8
(at most 256) and their prompt budget the longest prompt (at most what the base's positions
leave); both are recorded with the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .encoding import ResponseFormat
from .examples import DataError, Example, get_task
from .records import DataFileConfig, read_records

MAX_FILE_RESPONSE = 256


@dataclass
class Prepared:
    """Everything a run needs to know about its data."""

    name: str
    kind: str
    metric: str
    format: ResponseFormat
    train: list[Example]
    eval: list[Example]
    eval_split: str
    label_words: dict[int, str] = field(default_factory=dict)
    template: str = ""
    notes: str = ""
    skipped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "metric": self.metric, "eval_split": self.eval_split,
                "template": self.template, "notes": self.notes, "skipped_rows": self.skipped,
                "label_words": {str(k): v for k, v in self.label_words.items()},
                "response_budget": self.format.response_budget, "max_prompt_len": self.format.max_prompt_len}


def task_directory(task: str, data_dir: str, data_root: str) -> Path:
    """The task's folder: ``data_dir`` when given, else ``data_root/<the task's data_subdir>``."""
    if data_dir:
        return Path(data_dir)
    return Path(data_root) / get_task(task).data_subdir


def subsample(items: list, count: int, seed: int = 0) -> list:
    """``count`` items chosen by a fixed seeded permutation, in their original order (all when
    ``count`` is 0 or at least the length): a label-sorted file still gives a fair sample."""
    if not count or count >= len(items):
        return list(items)
    import torch

    keep = sorted(torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:count].tolist())
    return [items[i] for i in keep]


def read_file(path: str, cfg: DataFileConfig, require_response: bool = True) -> tuple[list[Example], int]:
    result = read_records(path, cfg, require_response=require_response)
    return result.examples, len(result.skipped)


def file_budgets(examples: list[Example], tokenizer, fmt: ResponseFormat, max_positions: int) -> ResponseFormat:
    """Budgets for users' free text where the config leaves them 0 (module docstring)."""
    budget = fmt.response_budget
    if not budget:
        longest = max(len(tokenizer(ex.response, add_special_tokens=False)["input_ids"]) for ex in examples)
        budget = min(MAX_FILE_RESPONSE, 8 * math.ceil((longest + 1) / 8))
    prompt = fmt.max_prompt_len
    if not prompt:
        longest = max(len(tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]) for ex in examples)
        prompt = max(1, min(longest, max_positions - budget - 3))
    return fmt.resolved(budget, prompt)


def resolve_data(*, task: str, data_dir: str, data_root: str, data_file: str, eval_file: str, eval_split: str,
                 file_cfg: DataFileConfig, metric: str, fmt: ResponseFormat, tokenizer=None,
                 max_positions: int = 512, need_train: bool = True) -> Prepared:
    """Read the run's examples (train unless ``need_train`` is False, eval when there is one)."""
    if data_file or (eval_file and not task):
        train, skipped_train = read_file(data_file, file_cfg) if (data_file and need_train) else ([], 0)
        evals, skipped_eval = read_file(eval_file, file_cfg) if eval_file else ([], 0)
        if tokenizer is not None:
            fmt = file_budgets(train or evals, tokenizer, fmt, max_positions)
        name = Path(data_file or eval_file).name
        return Prepared(name, "generation", metric or "accuracy", fmt, train, evals,
                        "eval_file" if eval_file else "", template=file_cfg.template,
                        skipped={"train": skipped_train, "eval": skipped_eval})
    if not task:
        raise DataError("no data: give a task (--task) or a data file (--data-file / --eval-file)")
    spec = get_task(task)
    directory = task_directory(task, data_dir, data_root)
    split = eval_split or spec.eval_split
    train = spec.load(directory, "train") if need_train else []
    evals = read_file(eval_file, file_cfg)[0] if eval_file else spec.load(directory, split)
    if eval_file and spec.kind == "classification":
        raise DataError(f"--eval-file with classification task {task}: evaluate the file as free text "
                        "(without --task) or use the task's own splits")
    return Prepared(spec.name, spec.kind, metric or spec.metric, fmt.resolved(spec.response_budget,
                    spec.max_prompt_len), train, evals, "eval_file" if eval_file else split,
                    dict(spec.label_words), spec.template, spec.notes)
