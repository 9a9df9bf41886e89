"""Zero-shot composite tasks: two classification tasks asked at once, answered as two words,
with exact ground truth from the shipped data.

    prompt   = instruction_A(text_a) + " " + instruction_B(text_b)
               e.g. "review: a gripping film sentiment: question: where is boston ? answer type:"
    response = word_A + " " + word_B            e.g. "positive location"

Each part keeps its task's own template, so an adapter trained on task A alone sees its own
instruction inside the composite one. Rows pair example i of A's split with example i of B's
split after a seeded shuffle of each (``torch.Generator().manual_seed(SEED + k)``, k = 0 for A,
1 for B): n = min(|A|, |B|, cap) rows. ``eval`` ("test") is built from the tasks' reported
splits (SST-2 dev, TREC test, AG News test), ``train`` from their train splits (for the
upper-bound model trained on the composite itself; never used for the zero-shot scores).
The data folder is the data root holding every task folder (``--data-root``, default
``../shared/data``). Metric: exact match of the two words (``accuracy``);
``part_accuracy`` scores each word separately from ``predictions.jsonl``.

| task | parts | test rows | train rows |
|---|---|---|---|
| sst2_trec | sentiment (SST-2 dev) + question type (TREC test) | 500 | 5,452 |
| ag_news_sst2 | topic (AG News test) + sentiment (SST-2 dev) | 500 | 10,001 |
| trec_ag_news | question type (TREC test) + topic (AG News test) | 500 | 5,452 |

``sst2_text``, ``trec_text``, ``ag_news_text``: each part alone as free text in the same
4-token layout (label word, end token, fill), for single-task adapters that share the
composite tasks' layout (the classification tasks use a 1-token region without end token).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .examples import Example, TaskSpec, get_task, register_task

SEED = 0
EVAL_ROWS = 500
PARTS = {"sst2_trec": ("sst2", "trec"), "ag_news_sst2": ("ag_news", "sst2"), "trec_ag_news": ("trec", "ag_news")}


def _shuffled(items: list[Example], seed: int) -> list[Example]:
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return [items[i] for i in order]


def build_composite(first: list[Example], second: list[Example], cap: int = 0, seed: int = SEED) -> list[Example]:
    """Pair the two tasks' examples (each shuffled with its own seed) into composite examples;
    ``id`` records the source rows' positions as "a<i>+b<j>"."""
    a, b = _shuffled(list(enumerate(first)), seed), _shuffled(list(enumerate(second)), seed + 1)
    n = min(len(a), len(b), cap or max(len(a), len(b)))
    out = []
    for (i, ea), (j, eb) in zip(a[:n], b[:n]):
        if ea.label is None or eb.label is None:
            raise ValueError("composite tasks are built from classification examples (with labels)")
        answer = f"{ea.response} {eb.response}"
        out.append(Example(f"{ea.prompt} {eb.prompt}", answer, (answer,), id=f"a{i}+b{j}"))
    return out


def _split(names: tuple[str, str], split_of: Callable[[TaskSpec], str], cap: int) -> Callable[[Path], list[Example]]:
    def load(root: Path) -> list[Example]:
        specs = [get_task(n) for n in names]
        parts = [s.load(Path(root) / s.data_subdir, split_of(s)) for s in specs]
        return build_composite(parts[0], parts[1], cap)

    return load


def part_accuracy(predictions: list[str], answers: list[str]) -> dict[str, float]:
    """Exact match of the whole answer and of each word in its place ("first", "second"), in
    percent; and, order-free, whether each part's gold word is among the predicted words at all
    ("first_any", "second_any": the three tasks' label words are disjoint, so a word names its
    task) and the mean number of predicted words ("words"): they tell a model that answers one
    of the two tasks, or both in the other order, from one that answers neither."""
    scores = {"both": 0, "first": 0, "second": 0, "first_any": 0, "second_any": 0}
    words = 0
    for pred, gold in zip(predictions, answers):
        p, g = pred.strip().lower().split(), gold.strip().lower().split()
        scores["both"] += p == g
        scores["first"] += len(p) >= 1 and p[0] == g[0]
        scores["second"] += len(p) >= 2 and p[1] == g[1]
        scores["first_any"] += g[0] in p
        scores["second_any"] += len(g) >= 2 and g[1] in p
        words += len(p)
    n = max(1, len(answers))
    return {**{k: 100.0 * v / n for k, v in scores.items()}, "words": words / n}


def _as_text(name: str, split: str) -> Callable[[Path], list[Example]]:
    def load(root: Path) -> list[Example]:
        spec = get_task(name)
        return [Example(ex.prompt, ex.response, (ex.response,), id=ex.id)
                for ex in spec.load(Path(root) / spec.data_subdir, split)]

    return load


def part_accuracy_file(path: str | Path) -> dict[str, float]:
    """``part_accuracy`` of a ``predictions.jsonl`` written by ``evaluate`` on a composite task."""
    import json

    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return {**part_accuracy([r["prediction"] for r in rows], [r["references"][0] for r in rows]), "rows": len(rows)}


for _single in sorted({t for pair in PARTS.values() for t in pair}):  # sst2_text, trec_text, ag_news_text
    _spec = get_task(_single)
    register_task(TaskSpec(
        name=f"{_single}_text", kind="generation", metric="accuracy", data_subdir="", eval_split="test",
        splits={"train": _as_text(_single, "train"), "test": _as_text(_single, _spec.eval_split)},
        response_budget=4, max_prompt_len=128, template=_spec.template,
        notes=(f"{_single} as free text in the composite tasks' layout (the same 4-token response region: the "
               f"label word, the end token, fill; prompt budget 128), so a single-task adapter trained on it is "
               f"scored on a composite task in the layout it was trained in; test = {_single}'s "
               f"{_spec.eval_split} split, all rows."),
    ))

for _name, _names in PARTS.items():
    register_task(TaskSpec(
        name=_name, kind="generation", metric="accuracy", data_subdir="", eval_split="test",
        splits={"train": _split(_names, lambda s: "train", 0),
                "test": _split(_names, lambda s: s.eval_split, EVAL_ROWS)},
        response_budget=4, max_prompt_len=128,
        template=f"<{_names[0]} instruction> <{_names[1]} instruction>",
        notes=(f"zero-shot composite of {_names[0]} and {_names[1]}: prompt = both instructions in that order, "
               f"response = both label words ('word_a word_b'); rows pair the two tasks' splits after seeded "
               f"shuffles (seed {SEED} and {SEED + 1}); test = the reported splits, {EVAL_ROWS} rows; train = the "
               "train splits, min(|A|, |B|) rows (the upper bound only). Response budget 4 = 2 label-word "
               "tokens + end token + 1; prompt budget 128 = the two tasks' 60 + 60 (+ 8); measured with the "
               "packaged MiniLM tokenizer, test prompts that fit: sst2_trec 100%, ag_news_sst2 98.2%, "
               "trec_ag_news 99.4% (longer ones lose their middle)."),
    ))

