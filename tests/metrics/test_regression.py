"""STS-B: Pearson / Spearman x100, parse rate, midpoint fallback, undefined correlations."""

import math

import pytest

from lora_diffusion.metrics import compute_metrics
from lora_diffusion.metrics.regression import FALLBACK_SCORE, parse_score


def test_parse_score():
    assert parse_score("3.8") == 3.8
    assert parse_score("Score: 4 out of 5") == 4.0  # first number
    assert parse_score(".5") == 0.5
    assert parse_score("very similar") is None
    assert FALLBACK_SCORE == 2.5


def test_stsb_hand_computed():
    # x = [1, 2, 3], y = [1, 2, 4]; means 2 and 7/3
    # dx = [-1, 0, 1], dy = [-4/3, -1/3, 5/3]; sum dx*dy = 4/3 + 5/3 = 3
    # |dx| = sqrt(2), |dy| = sqrt(42/9) -> r = 3 / (sqrt(2) sqrt(42) / 3) = 9 / sqrt(84)
    # ranks are identical -> Spearman = 1
    result = compute_metrics("stsb", ["1", "2", "3"], [("1",), ("2",), ("4",)])
    assert result["pearson"] == pytest.approx(100 * 9 / math.sqrt(84))
    assert result["spearman"] == pytest.approx(100.0)
    assert result["parse_rate"] == pytest.approx(100.0)


def test_parse_failure_scores_midpoint():
    # predictions parse to [1, 2.0, 2.5 (fallback)], gold [1, 2, 4]
    # x mean 11/6: dx = [-5/6, 1/6, 4/6]; dy = [-4/3, -1/3, 5/3]
    # sum dx*dy = 20/18 - 1/18 + 20/18 = 13/6; |dx|^2 = 42/36, |dy|^2 = 42/9
    # r = (13/6) / sqrt(42/36 * 42/9) = (13/6) / (42/18) = 39/42; ranks identical -> rho = 1
    # parse_rate = 2/3
    result = compute_metrics(
        "stsb", ["1", "about 2.0 I think", "no idea"], [("1",), ("2",), ("4",)]
    )
    assert result["pearson"] == pytest.approx(100 * 39 / 42)
    assert result["spearman"] == pytest.approx(100.0)
    assert result["parse_rate"] == pytest.approx(200 / 3)


def test_constant_predictions_give_zero_not_nan():
    result = compute_metrics("stsb", ["3", "3.0", "3"], [("1",), ("2",), ("4",)])
    assert result["pearson"] == 0.0
    assert result["spearman"] == 0.0


def test_all_unparsable_is_constant_midpoint():
    result = compute_metrics("stsb", ["n/a", "?", "similar"], [("1",), ("2",), ("4",)])
    assert result == {"pearson": 0.0, "spearman": 0.0, "parse_rate": 0.0, "examples": 3}


def test_constant_gold_gives_zero():
    result = compute_metrics("stsb", ["1", "2"], [("3",), ("3",)])
    assert result["pearson"] == 0.0 and result["spearman"] == 0.0


def test_single_example_gives_zero():
    result = compute_metrics("stsb", ["3"], [("3",)])
    assert result["pearson"] == 0.0 and result["spearman"] == 0.0


def test_anticorrelation_is_negative():
    result = compute_metrics("stsb", ["0", "5"], [("5",), ("0",)])
    assert result["pearson"] == pytest.approx(-100.0)
