"""Corpus BLEU and chrF++ with sacrebleu, supporting several references per example.

Reference: Post (2018), "A Call for Clarity in Reporting BLEU Scores"
(https://github.com/mjpost/sacrebleu). BLEU is Papineni et al. (2002) with sacrebleu's
defaults (``BLEU()``: 13a tokenisation, 4-grams, exponential smoothing, case-sensitive,
closest reference length); chrF++ is Popovic (2017) as ``CHRF(word_order=2)`` (character
6-grams plus word 1-2-grams, beta 2). Both are corpus-level: statistics are summed over all
examples before the score is formed, so the figure is *not* a mean of sentence scores.

Multiple references: sacrebleu takes reference *streams* (``refs[k][i]`` = k-th reference of
example i) that must all be as long as the hypotheses. When examples have different numbers
of references, :func:`reference_streams` pads the shorter ones with ``None``, which sacrebleu
drops before scoring (its documented variable-reference mechanism, signature ``nrefs:var``).
``""`` is *not* used as padding: sacrebleu 2.x keeps it as a zero-length reference, which can
become the "closest" reference length and cancel BLEU's brevity penalty. BLEU clips n-gram
counts by the max over references and takes the closest reference length, so the order of
the references of an example does not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def bleu_metric() -> Any:
    """Shared ``sacrebleu.metrics.BLEU()`` (default settings)."""
    from sacrebleu.metrics import BLEU

    return BLEU()


@lru_cache(maxsize=1)
def chrf_metric() -> Any:
    """Shared ``sacrebleu.metrics.CHRF(word_order=2)``, i.e. chrF++."""
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=2)


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Transpose per-example reference tuples into equal-length streams, padding with None."""
    depth = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(depth)]


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU (0-100)."""
    return float(bleu_metric().corpus_score(list(predictions), reference_streams(references)).score)


def corpus_chrf_pp(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus chrF++ (0-100)."""
    return float(chrf_metric().corpus_score(list(predictions), reference_streams(references)).score)


def translation(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """``{"bleu", "chrf++"}`` in percent."""
    return {
        "bleu": corpus_bleu(predictions, references),
        "chrf++": corpus_chrf_pp(predictions, references),
    }
