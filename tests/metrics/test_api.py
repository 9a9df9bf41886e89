"""The public entry point: registry, validation and the shared result conventions."""

import pytest

from lora_diffusion.metrics import METRIC_NAMES, compute_metrics, primary_metric

# One tiny valid input per metric (gsm8k and stsb need numeric golds).
_INPUTS = {
    "accuracy": (["yes", "no"], [("yes",), ("yes",)]),
    "squad": (["Paris", "London"], [("Paris",), ("Rome",)]),
    "gsm8k": (["#### 4", "5"], [("2+2 #### 4",), ("#### 6",)]),
    "rouge": (["the cat sat", "a dog"], [("the cat sat",), ("a dog ran",)]),
    "translation": (["the cat sat on the mat", "hello"], [("the cat sat on the mat",), ("hi",)]),
    "commongen": (
        ["the cat sat on the mat", "a dog runs"],
        [("the cat sat on the mat",), ("dogs run",)],
    ),
    "stsb": (["1.0", "4.0"], [("0.5",), ("4.5",)]),
}

_PRIMARY = {
    "accuracy": "accuracy",
    "squad": "f1",
    "gsm8k": "exact_match",
    "rouge": "rougeL",
    "translation": "bleu",
    "commongen": "bleu4",
    "stsb": "pearson",
}


def test_metric_names_are_exactly_the_documented_ones():
    assert set(METRIC_NAMES) == set(_PRIMARY)
    assert isinstance(METRIC_NAMES, tuple)


@pytest.mark.parametrize("name", sorted(_PRIMARY))
def test_primary_metric(name):
    assert primary_metric(name) == _PRIMARY[name]


@pytest.mark.parametrize("name", sorted(_INPUTS))
def test_every_result_has_primary_examples_and_floats(name):
    predictions, references = _INPUTS[name]
    result = compute_metrics(name, predictions, references)
    assert result["examples"] == len(predictions)
    assert primary_metric(name) in result
    for key, value in result.items():
        assert isinstance(value, (int, float)), key
        if key not in ("examples", "cider"):  # CIDEr is x100 of a 0-10 score, not a percentage
            assert 0.0 <= value <= 100.0 + 1e-9, (key, value)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="known metrics: .*squad"):
        compute_metrics("bleurt", ["a"], [("a",)])
    with pytest.raises(ValueError, match="accuracy"):
        primary_metric("nope")


def test_length_mismatch():
    with pytest.raises(ValueError, match="mismatch"):
        compute_metrics("accuracy", ["a", "b"], [("a",)])


def test_empty_inputs():
    with pytest.raises(ValueError, match="empty"):
        compute_metrics("squad", [], [])


def test_bare_string_reference_is_rejected():
    # A list of strings instead of a list of tuples would silently score against characters.
    with pytest.raises(ValueError, match="is a string"):
        compute_metrics("accuracy", ["a"], ["a"])


def test_empty_reference_set_is_rejected():
    with pytest.raises(ValueError, match="no gold answer"):
        compute_metrics("accuracy", ["a"], [()])
