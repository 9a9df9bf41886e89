"""ROUGE-1/2/L F-measures (rouge-score, stemmed), max over references, mean over examples."""

import pytest

from lora_diffusion.metrics import compute_metrics
from lora_diffusion.metrics.rouge import best_fmeasures, rouge_scorer

# rouge-score README example: scorer.score(target, prediction) with
TARGET = "The quick brown fox jumps over the lazy dog"
PREDICTION = "The quick brown dog jumps on the log."


def test_readme_example_hand_computed():
    # tokens (lowercased, stemmed): target  [the quick brown fox jump over the lazi dog] (9)
    #                                pred   [the quick brown dog jump on the log]       (8)
    # rouge1: overlap the x2, quick, brown, dog, jump = 6 -> F = 2*6 / (9 + 8) = 12/17
    # rouge2: target bigrams 8, pred bigrams 7, shared (the quick), (quick brown) = 2
    #         -> F = 2*2 / (8 + 7) = 4/15
    # rougeL: LCS "the quick brown jump the" = 5 -> F = 2*5 / 17 = 10/17
    result = compute_metrics("rouge", [PREDICTION], [(TARGET,)])
    assert result["rouge1"] == pytest.approx(100 * 12 / 17)
    assert result["rouge2"] == pytest.approx(100 * 4 / 15)
    assert result["rougeL"] == pytest.approx(100 * 10 / 17)
    assert result["examples"] == 1


def test_scorer_is_cached():
    assert rouge_scorer() is rouge_scorer()


def test_max_over_references():
    best = best_fmeasures(PREDICTION, ["completely unrelated words", TARGET])
    assert best["rouge1"] == pytest.approx(12 / 17)
    assert best_fmeasures(PREDICTION, [PREDICTION, TARGET])["rougeL"] == pytest.approx(1.0)


def test_mean_over_examples():
    # example 1: identical -> 1.0 for every type; example 2: README pair -> 12/17, 4/15, 10/17
    result = compute_metrics("rouge", ["a cat sat", PREDICTION], [("A cat sat.",), (TARGET,)])
    assert result["rouge1"] == pytest.approx(100 * (1 + 12 / 17) / 2)
    assert result["rouge2"] == pytest.approx(100 * (1 + 4 / 15) / 2)
    assert result["rougeL"] == pytest.approx(100 * (1 + 10 / 17) / 2)


def test_stemming_matches_inflections():
    # "running dogs" vs "run dog": Porter stems -> [run, dog] both -> 100
    result = compute_metrics("rouge", ["running dogs"], [("run dog",)])
    assert result["rouge1"] == pytest.approx(100.0)


def test_empty_prediction_scores_zero():
    result = compute_metrics("rouge", [""], [("some text",)])
    assert result["rouge1"] == result["rouge2"] == result["rougeL"] == 0.0
