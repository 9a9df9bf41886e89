"""One example representation for every task, and the task registry.

An ``Example`` is a clean prompt (the instruction c: the trunk sees it, it is never masked)
and a response of any length. Classification is the special case whose response is one
label word (a single token, so the response length never leaks the label) and which carries
the label id. ``references`` holds every acceptable answer for the metrics (SQuAD lists
several); by default the response itself.

A ``TaskSpec`` names a task's loaders (split -> reader of the task's directory), its metric
(``lora_diffusion.metrics``), its response budget in tokens and its prompt budget. Tasks
register themselves in ``TASKS`` from ``data/tasks.py`` (classification, GLUE / TREC /
AG News) and ``data/generation_tasks.py`` (SQuAD, GSM8K, XSum, WMT14, CommonGen, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A data file is missing or malformed; the message names file, line and field."""


@dataclass(frozen=True)
class Example:
    """A prompt (never masked) and its gold response; ``label`` for classification."""

    prompt: str
    response: str
    references: tuple[str, ...] = ()
    label: int | None = None
    id: str = ""

    @property
    def answers(self) -> tuple[str, ...]:
        """Every acceptable answer for the metrics (the response when none is given)."""
        return self.references or (self.response,)


Loader = Callable[[Path], list[Example]]
KINDS = ("classification", "generation")


@dataclass(frozen=True)
class TaskSpec:
    """A task: how to read each split from its directory, how to score it, how long it is.

    ``response_budget``: response tokens per row, the end token included (classification: 1
    and no end token). ``max_prompt_len``: prompt tokens kept (longer prompts lose their
    middle, counted). ``data_subdir``: the task's folder under a data root such as
    ``../shared/data``. ``label_words``: label id -> single-token word (classification)."""

    name: str
    kind: str
    splits: dict[str, Loader]
    metric: str
    response_budget: int = 1
    max_prompt_len: int = 64
    data_subdir: str = ""
    eval_split: str = "dev"
    label_words: dict[int, str] = field(default_factory=dict)
    template: str = ""
    notes: str = ""  # how a split was carved, recorded in every result and report

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "classification" and not self.label_words:
            raise ValueError(f"task {self.name}: a classification task needs label words")
        if self.eval_split not in self.splits:
            raise ValueError(f"task {self.name}: eval split {self.eval_split!r} is not among {sorted(self.splits)}")

    def load(self, directory: str | Path, split: str) -> list[Example]:
        if split not in self.splits:
            raise DataError(f"task {self.name} has no {split!r} split here; splits: {sorted(self.splits)}")
        return self.splits[split](Path(directory))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "metric": self.metric, "splits": sorted(self.splits),
                "eval_split": self.eval_split, "response_budget": self.response_budget,
                "max_prompt_len": self.max_prompt_len, "template": self.template, "notes": self.notes}


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} is registered twice")
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    from . import composite, generation_tasks, tasks  # noqa: F401  (registration on import)

    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None


def task_names() -> list[str]:
    from . import composite, generation_tasks, tasks  # noqa: F401

    return sorted(TASKS)


def carve_split(items: Sequence, eval_count: int, seed: int = 0) -> tuple[list, list]:
    """A fixed, seeded (train, eval) partition of ``items`` for tasks that ship one split only:
    a permutation from ``torch.Generator().manual_seed(seed)``; the first ``eval_count`` items
    of it are eval, the rest train. The seed is the task's, not the run's, so every run and
    every method sees the same eval rows."""
    import torch

    if not 0 < eval_count < len(items):
        raise DataError(f"cannot carve {eval_count} eval rows out of {len(items)}")
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return [items[i] for i in order[eval_count:]], [items[i] for i in order[:eval_count]]
