"""Accuracy: strip + lowercase exact match against any reference."""

import pytest

from lora_diffusion.metrics import compute_metrics
from lora_diffusion.metrics.text import is_correct, normalize_label


def test_normalize_label():
    assert normalize_label("  Positive\n") == "positive"
    assert normalize_label("New  York") == "new  york"  # inner whitespace kept


def test_is_correct_any_reference():
    assert is_correct("B", ("a", "b"))
    assert not is_correct("b.", ("b",))  # punctuation is not removed


def test_accuracy_hand_computed():
    # correct: " Yes" (yes), "NO" (no), "maybe" vs ("perhaps","Maybe") -> 3; "no" vs yes -> wrong
    # 3 / 4 = 75 %
    result = compute_metrics(
        "accuracy",
        [" Yes", "NO", "maybe", "no"],
        [("yes",), ("no",), ("perhaps", "Maybe"), ("yes",)],
    )
    assert result == {"accuracy": pytest.approx(75.0), "examples": 4}
