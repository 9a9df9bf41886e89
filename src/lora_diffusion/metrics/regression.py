"""STS-B: Pearson and Spearman correlation between predicted and gold similarity scores.

Reference: GLUE's STS-B task (Cer et al., 2017; Wang et al., 2019), scored with Pearson and
Spearman correlation (``scipy.stats.pearsonr`` / ``spearmanr``), reported x100.

Definition used here:

* gold: the number in ``references[i][0]`` (a score on the 0-5 scale); a reference without a
  number raises ``ValueError``. Both sides first get ``numbers.join_number_parts`` (a wordpiece
  decoder writes ``3.8`` as ``"3. 8"``).
* prediction: the first number in the output text (``-?\\d+(\\.\\d*)?`` or ``.5``). An output
  without a number is scored as **2.5**, the midpoint of the 0-5 scale, and counts against
  ``parse_rate`` (% of outputs that contained a number). Predictions are not clipped to 0-5.
* correlations are x100, so they range over -100..100 (negative for anti-correlation).
* when a correlation is undefined (fewer than two examples, or constant predictions or gold
  scores) it is reported as **0.0** rather than NaN.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence

from .numbers import join_number_parts

FALLBACK_SCORE = 2.5
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


def parse_score(text: str) -> float | None:
    """The first number in ``text`` as a float, or ``None`` when there is none."""
    match = _NUMBER.search(join_number_parts(text))
    return float(match.group()) if match else None


def parse_gold(reference: str) -> float:
    value = parse_score(reference)
    if value is None:
        raise ValueError(f"STS-B reference holds no number: {reference!r}")
    return value


def _correlation(fn: Callable[..., object], x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(x, y)[0])  # type: ignore[index]
    return 0.0 if math.isnan(value) else 100.0 * value


def stsb(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"pearson", "spearman", "parse_rate"}``, correlations x100 and parse rate in percent."""
    from scipy.stats import pearsonr, spearmanr

    parsed = [parse_score(p) for p in predictions]
    preds = [FALLBACK_SCORE if v is None else v for v in parsed]
    golds = [parse_gold(refs[0]) for refs in references]
    return {
        "pearson": _correlation(pearsonr, preds, golds),
        "spearman": _correlation(spearmanr, preds, golds),
        "parse_rate": 100.0 * sum(v is not None for v in parsed) / len(parsed),
    }
