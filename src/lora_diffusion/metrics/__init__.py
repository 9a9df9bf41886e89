"""Task metrics: one entry point, :func:`compute_metrics`, for every evaluated task.

Conventions shared by all metrics:

* ``predictions[i]`` is the model's output text for example ``i``; ``references[i]`` is the
  tuple of *every* acceptable gold answer for it (one or more). Per-example scores take the
  maximum over the references unless the metric is corpus-level (BLEU, chrF++, CIDEr), where
  the references are passed to the library as multiple reference streams.
* Every score is a float in percent (0-100), except CIDEr, which is reported as the package's
  value x100 and is not bounded by 100 (see :mod:`lora_diffusion.metrics.commongen`).
* Every result also holds ``"examples": n`` (the number of scored examples).

The definitions, with references to the official ones, are in the module docstrings:
:mod:`~lora_diffusion.metrics.text` (accuracy), :mod:`~lora_diffusion.metrics.squad`,
:mod:`~lora_diffusion.metrics.numbers` (gsm8k), :mod:`~lora_diffusion.metrics.rouge`,
:mod:`~lora_diffusion.metrics.translation`, :mod:`~lora_diffusion.metrics.commongen` and
:mod:`~lora_diffusion.metrics.regression` (stsb).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .commongen import commongen
from .numbers import gsm8k
from .regression import stsb
from .rouge import rouge
from .squad import squad
from .text import accuracy
from .translation import translation

__all__ = ["METRIC_NAMES", "compute_metrics", "primary_metric"]

MetricFn = Callable[[Sequence[str], Sequence[tuple[str, ...]]], dict[str, float]]

# name -> (function, key of the headline figure)
_REGISTRY: dict[str, tuple[MetricFn, str]] = {
    "accuracy": (accuracy, "accuracy"),
    "squad": (squad, "f1"),
    "gsm8k": (gsm8k, "exact_match"),
    "rouge": (rouge, "rougeL"),
    "translation": (translation, "bleu"),
    "commongen": (commongen, "bleu4"),
    "stsb": (stsb, "pearson"),
}

METRIC_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def _lookup(name: str) -> tuple[MetricFn, str]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown metric {name!r}; known metrics: {', '.join(METRIC_NAMES)}"
        ) from None


def primary_metric(name: str) -> str:
    """Key of the headline figure in ``compute_metrics(name, ...)``'s result."""
    return _lookup(name)[1]


def _validate(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[list[str], list[tuple[str, ...]]]:
    if len(predictions) != len(references):
        raise ValueError(
            f"length mismatch: {len(predictions)} predictions but {len(references)} reference sets"
        )
    if len(predictions) == 0:
        raise ValueError("no examples to score: predictions and references are empty")
    preds = [str(p) for p in predictions]
    refs: list[tuple[str, ...]] = []
    for i, gold in enumerate(references):
        if isinstance(gold, str):
            raise ValueError(
                f"references[{i}] is a string; it must be a sequence of gold answers, e.g. ({gold!r},)"
            )
        gold = tuple(str(g) for g in gold)
        if not gold:
            raise ValueError(f"references[{i}] holds no gold answer")
        refs.append(gold)
    return preds, refs


def compute_metrics(
    name: str, predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Score ``predictions`` against ``references`` with metric ``name`` (see ``METRIC_NAMES``).

    Raises ``ValueError`` for an unknown name, a length mismatch, empty inputs, or a reference
    set that is a bare string or empty.
    """
    fn, _ = _lookup(name)
    preds, refs = _validate(predictions, references)
    result = {key: float(value) for key, value in fn(preds, refs).items()}
    result["examples"] = len(preds)
    return result
