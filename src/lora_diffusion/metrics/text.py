"""Accuracy: normalised exact string match.

Definition: a prediction is correct when ``prediction.strip().lower()`` equals
``reference.strip().lower()`` for *any* of its references;
``accuracy = 100 * correct / n``. This is the usual exact-match accuracy for
classification-style outputs (labels such as ``"positive"``, ``"entailment"``, ``"B"``);
unlike SQuAD's normaliser it keeps punctuation, articles and inner whitespace.
"""

from __future__ import annotations

from collections.abc import Sequence


def normalize_label(text: str) -> str:
    """Strip surrounding whitespace and lowercase."""
    return text.strip().lower()


def is_correct(prediction: str, references: Sequence[str]) -> bool:
    """Whether ``prediction`` matches any reference after :func:`normalize_label`."""
    pred = normalize_label(prediction)
    return any(pred == normalize_label(ref) for ref in references)


def accuracy(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"accuracy"}`` in percent."""
    correct = sum(is_correct(p, refs) for p, refs in zip(predictions, references))
    return {"accuracy": 100.0 * correct / len(predictions)}
