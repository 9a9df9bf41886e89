"""SQuAD v1.1 exact match and token F1, as the official evaluation script computes them.

Reference: ``evaluate-v1.1.py`` distributed with SQuAD v1.1
(https://rajpurkar.github.io/SQuAD-explorer/, Rajpurkar et al., 2016). Definition:

* ``normalize_answer(s)``: lowercase, delete every character of ``string.punctuation``,
  replace the whole words ``a``/``an``/``the`` (regex ``\\b(a|an|the)\\b``) by a space, and
  collapse whitespace - applied in that order (so ``"the-end"`` becomes ``"theend"``, not
  ``"end"``).
* exact match: ``normalize_answer(prediction) == normalize_answer(gold)``.
* F1: over the whitespace tokens of the normalised strings, ``common`` = size of the multiset
  intersection; if ``common == 0`` the F1 is 0 (also when *both* are empty: v1.1 has no
  special case for that, unlike v2.0), else ``2PR / (P + R)`` with ``P = common/|pred|``,
  ``R = common/|gold|``.
* each example takes the max over its gold answers; the corpus figures are means x100.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, remove punctuation, remove articles, collapse whitespace (official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-level F1 between the normalised strings (0.0 when no token is shared)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_ground_truths(
    metric: Callable[[str, str], float], prediction: str, golds: Sequence[str]
) -> float:
    """Best score of ``prediction`` against any gold answer."""
    return max(metric(prediction, gold) for gold in golds)


def squad(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent."""
    n = len(predictions)
    em = sum(
        max_over_ground_truths(exact_match_score, p, g) for p, g in zip(predictions, references)
    )
    f1 = sum(max_over_ground_truths(f1_score, p, g) for p, g in zip(predictions, references))
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}
