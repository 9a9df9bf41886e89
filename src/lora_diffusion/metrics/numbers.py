"""GSM8K: exact match of the final numeric answer.

Reference: the GSM8K data format (Cobbe et al., 2021, https://github.com/openai/grade-school-math),
whose solutions end with ``#### <answer>``; its ``extract_answer`` takes the text after ``####``
and removes commas. Definition used here:

* gold: the number after the last ``####`` of the reference (if a reference has no ``####``,
  e.g. it is already just ``"1,234"``, its last number). A reference without any number is a
  data error and raises ``ValueError``.
* prediction: the first number after the last ``####`` when that text contains one, otherwise
  the last number anywhere in the text; no number at all means the answer is wrong.
* numbers are matched by ``-?\\d[\\d,]*(\\.\\d*)?`` (also ``.5``), then commas and a trailing
  period are removed and the values compared exactly as decimals, so ``"1,000" == "1000"``,
  ``"3.0" == "3"`` and ``"$18."`` gives 18.
* a wordpiece decoder writes ``3.8`` as ``"3. 8"`` and ``1,234`` as ``"1, 234"``: a ``.`` or
  ``,`` with digits on both sides has the spaces around it removed first (``join_number_parts``),
  in predictions and references alike.
* ``exact_match`` = % of predictions equal to any gold answer; ``answer_rate`` = % of
  predictions that contain any number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?(?:\d[\d,]*(?:\.\d*)?|\.\d+)")
_MARKER = "####"


_SPLIT_NUMBER = re.compile(r"(?<=\d)\s*([.,])\s*(?=\d)")


def join_number_parts(text: str) -> str:
    """``"3. 8"`` -> ``"3.8"``, ``"1, 234"`` -> ``"1,234"`` (digits on both sides only)."""
    return _SPLIT_NUMBER.sub(r"\1", text)


def parse_number(token: str) -> Decimal | None:
    """``"1,000"`` -> 1000, ``"18."`` -> 18, ``"3.0"`` -> 3.0; ``None`` when not a number."""
    cleaned = token.replace(",", "").rstrip(".")
    if cleaned in ("", "-"):
        return None
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def _numbers(text: str) -> list[Decimal]:
    values = (parse_number(m) for m in _NUMBER.findall(join_number_parts(text)))
    return [v for v in values if v is not None]


def extract_prediction(text: str) -> Decimal | None:
    """The number after the last ``####`` if there is one, else the last number in ``text``."""
    if _MARKER in text:
        after = _numbers(text.rsplit(_MARKER, 1)[1])
        if after:
            return after[0]
    found = _numbers(text)
    return found[-1] if found else None


def extract_gold(reference: str) -> Decimal:
    """The number after the last ``####`` (commas removed); raises ``ValueError`` if none."""
    value = extract_prediction(reference)
    if value is None:
        raise ValueError(f"GSM8K reference holds no number: {reference!r}")
    return value


def gsm8k(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"exact_match", "answer_rate"}`` in percent."""
    correct = answered = 0
    for prediction, refs in zip(predictions, references):
        golds = {extract_gold(r) for r in refs}
        value = extract_prediction(prediction)
        if value is None:
            continue
        answered += 1
        correct += value in golds
    n = len(predictions)
    return {"exact_match": 100.0 * correct / n, "answer_rate": 100.0 * answered / n}
