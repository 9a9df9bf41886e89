"""CommonGen: BLEU-4, ROUGE-L and pycocoevalcap CIDEr-D (x100)."""

import pytest

from lora_diffusion.metrics import compute_metrics, primary_metric
from lora_diffusion.metrics.commongen import cider_scorer, cider_tokens, corpus_cider


def test_keys_and_primary():
    result = compute_metrics("commongen", ["a dog runs in the park"], [("a dog runs in the park",)])
    assert set(result) == {"bleu4", "rougeL", "cider", "examples"}
    assert primary_metric("commongen") == "bleu4"


def test_cider_tokens_lowercase_and_drop_punctuation():
    assert cider_tokens("A Dog, running!  Fast.") == "a dog running fast"


def test_cider_hand_computed_identical_and_disjoint():
    # 2 examples -> N = 2; every reference n-gram has df = 1 and unseen n-grams get df 1 too,
    # so every idf = log(2) - log(1): a uniform weight, and CIDEr-D's per-order term is the
    # plain cosine of n-gram counts (lengths equal -> Gaussian penalty 1).
    # ex 1: "a b c d" vs "a b c d": cosines [1, 1, 1, 1] -> mean 1 -> x10 = 10
    # ex 2: "x y z w" vs "e f g h": 0
    # corpus = (10 + 0) / 2 = 5 -> x100 = 500
    cider = corpus_cider(["a b c d", "x y z w"], [("a b c d",), ("e f g h",)])
    assert cider == pytest.approx(500.0)


def test_cider_averages_over_references():
    # ex 1: refs "a b c d" (cosines 1) and "e f g h" (0): (1 + 0) / 2 refs -> 0.5 x10 = 5
    # ex 2: "p q r s" vs "p q r s" -> 10; corpus (5 + 10) / 2 = 7.5 -> 750
    # (CIDEr averages over references, unlike ROUGE-L's max: here rougeL is 100 for both.)
    result = compute_metrics(
        "commongen", ["a b c d", "p q r s"], [("a b c d", "e f g h"), ("p q r s",)]
    )
    assert result["cider"] == pytest.approx(750.0)
    assert result["rougeL"] == pytest.approx(100.0)
    assert result["bleu4"] == pytest.approx(100.0)


def test_cider_short_sentences_lack_higher_orders():
    # "a b" has no 3- or 4-grams: cosines [1, 1, 0, 0] -> mean 0.5 x10 = 5; other example 0
    # corpus (5 + 0) / 2 = 2.5 -> 250
    assert corpus_cider(["a b", "x y"], [("a b",), ("c d",)]) == pytest.approx(250.0)


def test_cider_is_corpus_dependent_single_example_is_zero():
    # one example: idf = log(1) - log(1) = 0 for every n-gram
    assert corpus_cider(["a dog runs"], [("a dog runs",)]) == 0.0


def test_cider_ignores_case_and_punctuation():
    refs = [("A dog runs.",), ("The cat sleeps!",)]
    assert corpus_cider(["a DOG runs", "the cat, sleeps"], refs) == pytest.approx(
        corpus_cider(["a dog runs", "the cat sleeps"], [("a dog runs",), ("the cat sleeps",)])
    )


def test_cider_without_any_reference_token_is_zero():
    assert corpus_cider(["a b", "c d"], [("!",), ("...",)]) == 0.0


def test_commongen_rouge_l_max_over_references():
    # ROUGE-L of "the dog runs" vs ("a cat sleeps", "the dog runs fast"):
    #   second ref: LCS 3, P = 3/3, R = 3/4 -> F = 2 * 0.75 / 1.75 = 6/7 (first ref: 0)
    result = compute_metrics("commongen", ["the dog runs"], [("a cat sleeps", "the dog runs fast")])
    assert result["rougeL"] == pytest.approx(100 * 6 / 7)


def test_scorer_is_cached():
    assert cider_scorer() is cider_scorer()
