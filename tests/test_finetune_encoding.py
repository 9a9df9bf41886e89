"""``finetune.encode_for``: the one encoder of a run; a prompt budget that cuts many prompts warns."""

import logging

import pytest

from lora_diffusion.config import ConfigError
from lora_diffusion.data.encoding import ResponseFormat
from lora_diffusion.data.examples import Example
from lora_diffusion.data.sources import Prepared
from lora_diffusion.finetune import encode_for


def _prepared(budget: int, examples: list[Example]) -> Prepared:
    return Prepared("pairs", "classification", "accuracy", ResponseFormat(1, budget), examples, [], "dev",
                    {0: "no", 1: "yes"})


def _rows(long: int, short: int) -> list[Example]:
    long_prompt = "sentence one: " + "word " * 40 + "sentence two: " + "word " * 40 + "same meaning:"
    return ([Example(long_prompt, "yes", label=1)] * long + [Example("short one: a b same meaning:", "no", label=0)]
            * short)


def test_many_cut_prompts_warn_naming_the_field(tokenizer, caplog):
    rows = _rows(long=2, short=18)  # 10% cut
    with caplog.at_level(logging.WARNING, logger="lora_diffusion.finetune"):
        encoded = encode_for(_prepared(32, rows), rows, tokenizer, 512)
    assert encoded.truncated == 2
    assert "pairs: 2 of 20 prompts (10%) are longer than the prompt budget of 32 tokens" in caplog.text
    assert "--set response.max_prompt_len=N" in caplog.text


def test_few_or_no_cut_prompts_are_quiet(tokenizer, caplog):
    rows = _rows(long=1, short=19)  # 5%: at the threshold, not above it
    with caplog.at_level(logging.WARNING, logger="lora_diffusion.finetune"):
        assert encode_for(_prepared(32, rows), rows, tokenizer, 512).truncated == 1
        assert encode_for(_prepared(128, rows), rows, tokenizer, 512).truncated == 0
    assert "prompt budget" not in caplog.text


def test_a_budget_beyond_the_base_positions_is_refused(tokenizer):
    with pytest.raises(ConfigError, match="exceeds the base's 64 positions"):
        encode_for(_prepared(100, _rows(1, 0)), _rows(1, 0), tokenizer, 64)
