"""CommonGen: corpus BLEU-4, ROUGE-L and CIDEr-D.

Reference: Lin et al. (2020), "CommonGen: A Constrained Text Generation Challenge for
Generative Commonsense Reasoning" (https://github.com/INK-USC/CommonGen), whose
``evaluation/Traditional/eval_metrics/eval.py`` tokenises with spaCy and scores with the
coco-caption BLEU/CIDEr/SPICE code. Definitions used here (multi-reference throughout):

* ``bleu4``: sacrebleu corpus BLEU with its defaults (4-grams, 13a tokenisation,
  case-sensitive), references padded as in :mod:`lora_diffusion.metrics.translation`. This is
  *not* numerically identical to the leaderboard's coco-caption BLEU-4 (other tokenisation,
  brevity and smoothing rules).
* ``rougeL``: rouge-score ROUGE-L F-measure, max over references, mean over examples x100
  (see :mod:`lora_diffusion.metrics.rouge`).
* ``cider``: CIDEr-D (Vedantam et al., 2015) from the maintained ``pycocoevalcap`` package
  (``pycocoevalcap.cider.cider.Cider``: n = 1..4, sigma = 6, clipped tf-idf cosine with a
  Gaussian length penalty, averaged over references, with the package's built-in x10). It is
  pure Python and needs no Java; the package's PTBTokenizer would, so it is not used: texts
  are tokenised by :func:`cider_tokens` (lowercase, ``\\w+`` runs, punctuation dropped).
  **Scale:** the package's corpus value x100 (the COCO captioning convention, e.g. 1.17 ->
  117.0). It is *not* a percentage and not bounded by 100 (the package's maximum is 10, i.e.
  1000 here). CommonGen's leaderboard figures (about 10-19) look like the package value x10;
  check the scale (and tokenisation) before comparing. The idf weights come from the
  references of the scored corpus itself, so CIDEr depends on the whole corpus; with a single
  example every idf is log(1/1) = 0 and CIDEr is 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from .rouge import best_fmeasures
from .translation import corpus_bleu

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1)
def cider_scorer() -> Any:
    """Shared ``pycocoevalcap`` ``Cider()`` scorer (n=4, sigma=6)."""
    from pycocoevalcap.cider.cider import Cider

    return Cider()


def cider_tokens(text: str) -> str:
    """Lowercased word tokens joined by single spaces, punctuation removed."""
    return " ".join(_WORD.findall(text.lower()))


def corpus_cider(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """pycocoevalcap CIDEr-D of the corpus, x100 (0 when no reference has any token)."""
    gts = {i: [cider_tokens(r) for r in refs] for i, refs in enumerate(references)}
    if not any(ref for refs in gts.values() for ref in refs):
        return 0.0  # the package's document-frequency table would be empty and it would crash
    res = {i: [cider_tokens(p)] for i, p in enumerate(predictions)}
    score, _ = cider_scorer().compute_score(gts, res)
    return 100.0 * float(score)


def commongen(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"bleu4", "rougeL", "cider"}`` (BLEU-4 and ROUGE-L in percent, CIDEr x100)."""
    rouge_l = sum(best_fmeasures(p, refs)["rougeL"] for p, refs in zip(predictions, references))
    return {
        "bleu4": corpus_bleu(predictions, references),
        "rougeL": 100.0 * rouge_l / len(predictions),
        "cider": corpus_cider(predictions, references),
    }
