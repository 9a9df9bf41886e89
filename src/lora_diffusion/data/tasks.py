"""Task registry: loader + instruction template + verbaliser (single-token label words).

Every task reads local files in their public layout (GLUE TSV, TREC / AG News CSV) from a
directory given by the caller; malformed rows fail with the file and line named. Templates
use ``{a}`` (and ``{b}`` for sentence pairs). Label words are single tokens, so the response
length never leaks the label.

Prompt budget: 60 tokens of the filled template (a longer prompt keeps its first and last tokens and
loses its middle, counted in every result); the sentence-pair tasks get room for both sentences:
MRPC 112, QNLI 128, RTE 200. AG News keeps 60 (9.5% of its train prompts are cut; the topic is in
the first 52 tokens).

| task | files | label words |
|---|---|---|
| sst2 | sst2/{train,dev}.tsv | negative, positive |
| trec | trec/{train,test}.csv | description, entity, abbreviation, human, location, number |
| ag_news | ag_news/train_subset10k_alps.tsv, test.csv | world, sports, business, science |
| mrpc | glue/MRPC/{train,dev}.tsv | no, yes (paraphrase) |
| rte | glue/RTE/{train,dev}.tsv | yes (entailment), no |
| cola | glue/CoLA/{train,dev}.tsv | unacceptable, acceptable |
| qnli | glue/QNLI/dev.tsv (no train here) | yes (entailment), no |
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from .classification import SST2, ClassificationTask
from .examples import DataError, Example, TaskSpec, register_task
from .textio import delimited_rows

Row = tuple[tuple[str, ...], int]


def read_table(path: Path, delimiter: str, text_cols: tuple[int, ...], label_col: int,
               to_label: Callable[[str], int], header: tuple[str, ...] = (), quoting: int = csv.QUOTE_NONE) -> list[Row]:
    """Rows of a delimited file as ((texts...), label id); errors name file, line and column.

    ``header``: the column names the file's first row must carry (its public layout), or ()
    for a layout without a header row. Neither is guessed: a header-less file where one is
    expected (its first row would be lost) and a header row where none is expected (it would
    be read as data) are refused, naming line 1."""
    rows: list[Row] = []
    need = max(*text_cols, label_col) + 1
    layout = "\\t".join(header) if delimiter == "\t" else delimiter.join(header)
    for lineno, rec in delimited_rows(path, delimiter, quoting):
        cells = [c.strip() for c in rec]
        if header and lineno == 1:
            if cells[: len(header)] != list(header):
                looks = "a data row" if _label_ok(to_label, cells, label_col) else f"{rec!r}"
                raise DataError(f"{path}:1: expected header '{layout}' (this task's layout), got {looks}; "
                                "add the header line (nothing is guessed: a first data row would be lost)")
            continue
        if len(rec) < need:
            raise DataError(f"{path}:{lineno}: expected at least {need} columns, got {len(rec)}")
        try:
            label = to_label(cells[label_col])
        except (KeyError, ValueError):
            hint = " (a header row? this file's layout has none)" if lineno == 1 else ""
            raise DataError(f"{path}:{lineno}: unknown label {rec[label_col]!r} (column {label_col + 1}){hint}") from None
        texts = tuple(cells[c] for c in text_cols)
        if not all(texts):
            empty = next(c for c in text_cols if not cells[c])
            raise DataError(f"{path}:{lineno}: empty text field (column {empty + 1})")
        rows.append((texts, label))
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def _label_ok(to_label: Callable[[str], int], cells: list[str], col: int) -> bool:
    try:
        to_label(cells[col])
    except (KeyError, ValueError, IndexError):
        return False
    return True


def _ints(n: int, offset: int = 0) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        value = int(raw) - offset
        if not 0 <= value < n:
            raise ValueError(raw)
        return value

    return convert


def _names(names: dict[str, int]) -> Callable[[str], int]:
    return lambda raw: names[raw]


def _classification(task: ClassificationTask, splits: dict[str, Callable[[Path], list[Row]]], subdir: str,
                    eval_split: str = "dev", notes: str = "", max_prompt_len: int = 60) -> TaskSpec:
    """Register a classification task: each split's (texts, label) rows become Examples whose
    prompt is the template filled in and whose response is the label word. ``max_prompt_len``
    (tokens of the filled template) covers every row, or about 99% of them, of the sentence-pair
    tasks, so that the second sentence is not cut (a longer prompt loses its middle)."""

    def examples(reader: Callable[[Path], list[Row]]) -> Callable[[Path], list[Example]]:
        return lambda d: [Example(task.instruction(texts), task.verbalizer[label], label=label)
                          for texts, label in reader(d)]

    return register_task(TaskSpec(
        name=task.name, kind="classification", splits={k: examples(v) for k, v in splits.items()},
        metric="accuracy", response_budget=1, max_prompt_len=max_prompt_len, data_subdir=subdir, eval_split=eval_split,
        label_words=dict(task.verbalizer), template=task.template, notes=notes))


def _tsv(name: str, cols: tuple[int, ...], label: int, conv, header: tuple[str, ...] = ()):
    return lambda d: read_table(d / name, "\t", cols, label, conv, header)


def _csv(name: str, cols: tuple[int, ...], label: int, conv):
    return lambda d: read_table(d / name, ",", cols, label, conv, (), csv.QUOTE_MINIMAL)


ENTAIL = {"entailment": 0, "not_entailment": 1}
AG = {"World": 0, "Sports": 1, "Business": 2, "Sci/Tech": 3}

SST2_HEADER = ("sentence", "label")
MRPC_HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
RTE_HEADER = ("index", "sentence1", "sentence2", "label")
QNLI_HEADER = ("index", "question", "sentence", "label")
_classification(SST2, {"train": _tsv("train.tsv", (0,), 1, _ints(2), SST2_HEADER),
                       "dev": _tsv("dev.tsv", (0,), 1, _ints(2), SST2_HEADER)}, "sst2")
_classification(
    ClassificationTask("trec", "question: {a} answer type:", {0: "description", 1: "entity", 2: "abbreviation",
                                                              3: "human", 4: "location", 5: "number"}),
    {"train": _csv("train.csv", (1,), 0, _ints(6)), "test": _csv("test.csv", (1,), 0, _ints(6))}, "trec", "test")
_classification(
    ClassificationTask("ag_news", "news: {a} topic:", {0: "world", 1: "sports", 2: "business", 3: "science"}),
    {"train": lambda d: read_table(d / "train_subset10k_alps.tsv", "\t", (0,), 1, _names(AG)),
     "test": _csv("test.csv", (2,), 0, _ints(4, offset=1))}, "ag_news", "test",
    notes="train: the 10,001-row subset (descriptions); test: all 7,600 rows, their descriptions (the train "
          "subset has no titles, so test prompts hold the description alone, as in train)")
_classification(
    ClassificationTask("mrpc", "sentence one: {a} sentence two: {b} same meaning:", {0: "no", 1: "yes"}),
    {"train": _tsv("train.tsv", (3, 4), 0, _ints(2), MRPC_HEADER), "dev": _tsv("dev.tsv", (3, 4), 0, _ints(2), MRPC_HEADER)},
    "glue/MRPC", max_prompt_len=112)  # train: longest 109 tokens
_classification(
    ClassificationTask("rte", "premise: {a} hypothesis: {b} entailed:", {0: "yes", 1: "no"}),
    {"train": _tsv("train.tsv", (1, 2), 3, _names(ENTAIL), RTE_HEADER),
     "dev": _tsv("dev.tsv", (1, 2), 3, _names(ENTAIL), RTE_HEADER)},
    "glue/RTE", max_prompt_len=200)  # train 99th percentile 202 tokens
_classification(
    ClassificationTask("cola", "sentence: {a} grammar:", {0: "unacceptable", 1: "acceptable"}),
    {"train": _tsv("train.tsv", (3,), 1, _ints(2)), "dev": _tsv("dev.tsv", (3,), 1, _ints(2))}, "glue/CoLA")
_classification(
    ClassificationTask("qnli", "question: {a} sentence: {b} answers:", {0: "yes", 1: "no"}),
    {"dev": _tsv("dev.tsv", (1, 2), 3, _names(ENTAIL), QNLI_HEADER)}, "glue/QNLI", notes="dev only here (no train split)",
    max_prompt_len=128)  # dev 99th percentile 119 tokens
