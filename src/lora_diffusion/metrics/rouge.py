"""ROUGE-1, ROUGE-2 and ROUGE-L F-measures with Google's ``rouge-score`` package.

Reference: Lin (2004), "ROUGE: A Package for Automatic Evaluation of Summaries", as
implemented by https://github.com/google-research/google-research/tree/master/rouge
(``rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)``).

Definition: for each example, the F-measure of each ROUGE type against every reference,
keeping the maximum per type (each type maximised separately, as ``rouge-score``'s
``score_multi`` does); the result is the mean over examples x100.

Notes:

* ``rougeL`` is the sentence-level LCS. ``rougeLsum`` would only differ for texts split into
  sentences by newlines, which the short outputs scored here are not.
* The package's default tokenizer lowercases, keeps only ``[a-z0-9]`` runs and Porter-stems
  tokens longer than 3 characters; text in other scripts therefore scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def rouge_scorer() -> Any:
    """The shared ``RougeScorer`` (imported lazily: ``rouge_score`` pulls in nltk)."""
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def best_fmeasures(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """Per ROUGE type, the best F-measure (0-1) of ``prediction`` over ``references``."""
    scores = rouge_scorer().score_multi(list(references), prediction)
    return {key: float(scores[key].fmeasure) for key in ROUGE_TYPES}


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"rouge1", "rouge2", "rougeL"}`` in percent."""
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, refs in zip(predictions, references):
        for key, value in best_fmeasures(prediction, refs).items():
            totals[key] += value
    n = len(predictions)
    return {key: 100.0 * total / n for key, total in totals.items()}
