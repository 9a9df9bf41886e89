"""sacrebleu corpus BLEU / chrF++ with variable numbers of references."""

import math

import pytest

from lora_diffusion.metrics import compute_metrics
from lora_diffusion.metrics.translation import (
    bleu_metric,
    chrf_metric,
    corpus_bleu,
    reference_streams,
)

# sacrebleu README example ("Using the Python API").
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REF_STREAM_1 = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
REF_STREAM_2 = ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]


def _per_example(*streams):
    return [tuple(r for r in refs if r is not None) for refs in zip(*streams)]


def test_readme_two_references():
    # README: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ...)"
    result = compute_metrics("translation", SYS, _per_example(REF_STREAM_1, REF_STREAM_2))
    assert result["bleu"] == pytest.approx(48.53, abs=0.005)
    assert result["examples"] == 3


def test_readme_chrf_figure_with_the_cached_objects():
    # README: "chrF2 = 59.73" is plain chrF (word_order=0); our chrF++ adds word 1-2-grams,
    # so it must equal sacrebleu's CHRF(word_order=2) on the same input and be below chrF2 here.
    from sacrebleu.metrics import CHRF

    refs = [REF_STREAM_1, REF_STREAM_2]
    assert CHRF().corpus_score(SYS, refs).score == pytest.approx(59.73, abs=0.005)
    ours = compute_metrics("translation", SYS, _per_example(*refs))["chrf++"]
    assert ours == pytest.approx(CHRF(word_order=2).corpus_score(SYS, refs).score)
    assert ours == pytest.approx(59.15, abs=0.005)  # pinned value (sacrebleu 2.x)


def test_readme_variable_number_of_references():
    # README "Variable Number of References": first sentence keeps only its second reference
    # -> "BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ...)"
    refs = _per_example([None, *REF_STREAM_1[1:]], REF_STREAM_2)
    assert len(refs[0]) == 1
    assert compute_metrics("translation", SYS, refs)["bleu"] == pytest.approx(29.44, abs=0.005)


def test_reference_streams_pad_with_none():
    streams = reference_streams([("a", "b"), ("c",), ("d", "e", "f")])
    assert streams == [["a", "c", "d"], ["b", None, "e"], [None, None, "f"]]


def test_padding_is_not_an_empty_reference():
    # hyp "a b" (2 tokens), ref "a b c d e" (5): BP = exp(1 - 5/2); an "" reference would
    # become the closest length (0) and remove the penalty. With None padding the second
    # example's lone reference is unaffected: duplicate it and the score must not change.
    preds = ["a b c d", "a b"]
    padded = corpus_bleu(preds, [("a b c d", "x y z w"), ("a b c d e",)])
    duplicated = corpus_bleu(preds, [("a b c d", "x y z w"), ("a b c d e", "a b c d e")])
    assert padded == pytest.approx(duplicated)
    # hand value: all n-gram precisions are 1 (6/6, 4/4, 2/2, 1/1), hyp length c = 4 + 2 = 6,
    # closest reference lengths r = 4 + 5 = 9 -> BLEU = BP = exp(1 - 9/6) = exp(-0.5)
    # (with "" padding r would be 4 + 0 and BLEU 100)
    assert padded == pytest.approx(100 * math.exp(-0.5))


def test_perfect_match_is_100():
    result = compute_metrics(
        "translation", ["the cat sat on the mat"], [("the cat sat on the mat",)]
    )
    assert result["bleu"] == pytest.approx(100.0)
    assert result["chrf++"] == pytest.approx(100.0)


def test_metric_objects_are_cached():
    assert bleu_metric() is bleu_metric()
    assert chrf_metric() is chrf_metric()
    assert chrf_metric().word_order == 2
