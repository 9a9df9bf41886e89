"""SQuAD v1.1: the official normaliser, EM, token F1 and max over gold answers."""

import pytest

from lora_diffusion.metrics import compute_metrics
from lora_diffusion.metrics.squad import exact_match_score, f1_score, normalize_answer


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  a   cat, an apple  ", "cat apple"),
        ("Theory of the atom", "theory of atom"),  # "the" inside "theory" is not a whole word
        ("the-end", "theend"),  # punctuation removed *before* articles: no word boundary left
        ("A", ""),
        ("1,000.5 km", "10005 km"),
        ("Über  Straße", "über straße"),
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_match_ignores_case_articles_punctuation():
    assert exact_match_score("The Denver Broncos.", "denver broncos") == 1.0
    assert exact_match_score("Denver", "Denver Broncos") == 0.0


def test_f1_hand_computed():
    # pred tokens: [denver, broncos, team] ; gold: [denver, broncos]
    # common = 2, P = 2/3, R = 2/2, F1 = 2 * (2/3) * 1 / (2/3 + 1) = (4/3) / (5/3) = 0.8
    assert f1_score("the Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)


def test_f1_counts_repeated_tokens_as_multiset():
    # pred [cat, cat, cat], gold [cat, dog]: common = min(3, 1) = 1
    # P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
    assert f1_score("cat cat cat", "cat dog") == pytest.approx(0.4)


def test_f1_no_common_tokens_is_zero():
    assert f1_score("Paris", "London") == 0.0


def test_v11_quirk_both_empty_after_normalization():
    # "The" and "an" both normalise to "": exact match holds, but v1.1's F1 returns 0 when
    # no token is shared (v2.0 would give 1.0 here).
    assert exact_match_score("The", "an") == 1.0
    assert f1_score("The", "an") == 0.0


def test_squad_max_over_references_hand_computed():
    # ex 1: "Denver Broncos" vs ("Broncos", "Denver Broncos") -> EM 1, F1 1
    # ex 2: "in the city of Paris" vs ("Paris",) -> pred [in, city, of, paris], gold [paris]
    #       EM 0, common 1, P = 1/4, R = 1, F1 = 2 * (1/4) / (5/4) = 0.4
    # ex 3: "London" vs ("Paris", "the capital") -> EM 0, F1 0
    # EM = 100 * 1/3 = 33.33..., F1 = 100 * (1 + 0.4 + 0) / 3 = 46.66...
    result = compute_metrics(
        "squad",
        ["Denver Broncos", "in the city of Paris", "London"],
        [("Broncos", "Denver Broncos"), ("Paris",), ("Paris", "the capital")],
    )
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(140 / 3)
    assert result["examples"] == 3


def test_max_over_references_picks_the_best_gold():
    # "whale" vs "blue whale": EM 0, P = 1, R = 1/2, F1 = 2/3; vs "Whale.": EM 1, F1 1
    result = compute_metrics("squad", ["whale"], [("blue whale", "Whale.")])
    assert result["exact_match"] == pytest.approx(100.0)
    assert result["f1"] == pytest.approx(100.0)
    # "blue whale" vs "whale": P = 1/2, R = 1, F1 = 2/3;
    # vs "big blue whale": P = 1, R = 2/3, F1 = 2 * (2/3) / (5/3) = 0.8 -> max 0.8, EM 0
    result = compute_metrics("squad", ["blue whale"], [("whale", "big blue whale")])
    assert result["exact_match"] == 0.0
    assert result["f1"] == pytest.approx(80.0)
