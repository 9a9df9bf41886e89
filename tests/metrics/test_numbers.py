"""GSM8K: final-number exact match and answer rate."""

from decimal import Decimal

import pytest

from lora_diffusion.metrics import compute_metrics
from lora_diffusion.metrics.numbers import extract_gold, extract_prediction, parse_number


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("1,000", Decimal(1000)),
        ("18.", Decimal(18)),
        ("3.0", Decimal(3)),
        ("-2.5", Decimal("-2.5")),
        (".5", Decimal("0.5")),
        ("1,234,567", Decimal(1234567)),
    ],
)
def test_parse_number(token, value):
    assert parse_number(token) == value


def test_parse_number_rejects_non_numbers():
    assert parse_number(",") is None
    assert parse_number("-") is None


def test_gold_is_the_number_after_the_last_marker():
    solution = "She has 3 + 4 = 7 boxes of 1,000 each.\n#### 7,000"
    assert extract_gold(solution) == 7000
    assert extract_gold("#### 1,234") == 1234
    assert extract_gold("#### 2 then #### 5") == 5
    assert extract_gold("42") == 42  # no marker: the (last) number itself


def test_gold_without_number_is_a_data_error():
    with pytest.raises(ValueError, match="no number"):
        extract_gold("#### unknown")


def test_prediction_prefers_marker_then_last_number():
    assert extract_prediction("2 + 3 = 5, so #### 5 (not 6)") == 5  # after the marker
    assert extract_prediction("2 + 3 = 5, then 5 * 2 = 10.") == 10  # last number, period dropped
    assert extract_prediction("It costs $1,250.") == 1250
    assert extract_prediction("#### nothing, but 12 was computed") == 12  # marker w/o number
    assert extract_prediction("I don't know") is None


def test_gsm8k_hand_computed():
    # 1 "... #### 1,234" vs 1234          -> correct (commas removed)
    # 2 "The answer is 1234."            -> correct (last number, trailing period)
    # 3 "So 3.0 apples"  vs 3             -> correct (numeric comparison)
    # 4 "#### 12" vs 13                   -> wrong, answered
    # 5 "no idea"                         -> wrong, no number
    # exact_match = 3/5 = 60 %, answer_rate = 4/5 = 80 %
    result = compute_metrics(
        "gsm8k",
        ["blah 5 #### 1,234", "The answer is 1234.", "So 3.0 apples", "#### 12", "no idea"],
        [("x #### 1234",), ("#### 1,234",), ("#### 3",), ("#### 13",), ("#### 2",)],
    )
    assert result["exact_match"] == pytest.approx(60.0)
    assert result["answer_rate"] == pytest.approx(80.0)
    assert result["examples"] == 5


def test_gsm8k_any_reference_matches():
    result = compute_metrics("gsm8k", ["#### 8"], [("#### 7", "#### 8")])
    assert result["exact_match"] == 100.0


def test_negative_answers():
    assert compute_metrics("gsm8k", ["it drops to -3"], [("#### -3",)])["exact_match"] == 100.0


def test_wordpiece_spacing_inside_numbers_is_joined():
    from lora_diffusion.metrics import compute_metrics
    from lora_diffusion.metrics.numbers import join_number_parts

    assert join_number_parts("#### 1, 234 and 3. 8 end. 5 cats") == "#### 1,234 and 3.8 end. 5 cats"
    out = compute_metrics("gsm8k", ["so #### 1, 234", "it is 3. 8"], [("#### 1,234",), ("#### 3.8",)])
    assert out["exact_match"] == 100.0
    sts = compute_metrics("stsb", ["3. 8", "1. 0", "4. 5"], [("3. 8",), ("1. 0",), ("4. 6",)])
    assert sts["parse_rate"] == 100.0 and sts["pearson"] > 99.0
