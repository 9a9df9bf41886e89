import pytest
import torch

from lora_diffusion.config import ConfigError
from lora_diffusion.data.encoding import (
    ResponseFormat,
    cut_middle,
    decode_responses,
    pad_collate,
    response_tokens,
    tokenize_examples,
)
from lora_diffusion.data.examples import Example


def test_response_region_end_and_fill_round_trip(tokenizer):
    examples = [Example("capital of france:", "paris"), Example("a long answer please:", "one two three four five six")]
    data = tokenize_examples(examples, tokenizer, ResponseFormat(response_budget=6, max_prompt_len=16))
    sep = tokenizer.sep_token_id
    assert data.end_id == sep and data.fill_id == sep  # BERT vocab: no EOS, so [SEP] ends and fills (LLaDA-style)
    for row in data.rows:
        gen = row["generate_mask"]
        assert int(gen.sum()) == 6  # every row: the same region, so its length tells nothing
        assert not (gen & row["instruction_mask"]).any() and not gen[0] and not gen[-1]
    region0 = data[0]["input_ids"][data[0]["generate_mask"]].tolist()
    paris = tokenizer("paris", add_special_tokens=False)["input_ids"]
    assert region0 == paris + [sep] * (6 - len(paris))  # response, end token, fill
    # the 5-word response is cut to budget - 1 tokens and still ends with the end token (counted)
    region1 = data[1]["input_ids"][data[1]["generate_mask"]].tolist()
    assert region1[-1] == sep and len(region1) == 6 and data.truncated_responses == 1
    assert data.counts()["truncated_responses"] == 1 and data.truncated == 0
    # decoding cuts at the first end token and drops the fill
    batch = pad_collate(data.rows)
    assert decode_responses(tokenizer, batch["input_ids"], batch["generate_mask"], data.end_id) == \
        ["paris", "one two three four five"]


def test_generation_stops_at_first_end_token_even_if_more_text_follows(tokenizer):
    sep = tokenizer.sep_token_id
    a, b = tokenizer.convert_tokens_to_ids(["yes", "no"])
    ids = torch.tensor([[101, a, sep, b, b, 102]])
    gen = torch.tensor([[False, True, True, True, True, False]])
    assert response_tokens(ids, gen, sep) == [[a]]
    assert decode_responses(tokenizer, ids, gen, sep) == ["yes"]
    assert response_tokens(ids, gen, None) == [[a, sep, b, b]]  # classification: the region as is


def test_custom_end_and_fill_tokens(tokenizer):
    fmt = ResponseFormat(response_budget=4, max_prompt_len=8, end_token="[SEP]", fill_token="[PAD]")
    data = tokenize_examples([Example("q:", "yes")], tokenizer, fmt)
    region = data[0]["input_ids"][data[0]["generate_mask"]].tolist()
    assert region == [tokenizer.convert_tokens_to_ids("yes"), tokenizer.sep_token_id, 0, 0]
    assert data[0]["attention_mask"].all()  # fill positions are generated, so attended
    with pytest.raises(ValueError, match="not in the tokenizer"):
        tokenize_examples([Example("q:", "yes")], tokenizer, ResponseFormat(4, 8, end_token="<eos_nope>"))


def test_prompt_loses_its_middle_and_is_counted(tokenizer):
    assert cut_middle(list(range(10)), 6, 2) == [0, 1, 2, 3, 8, 9]
    assert cut_middle(list(range(4)), 6, 2) == [0, 1, 2, 3]
    long = Example("document: " + "word " * 50 + "summary:", "short")
    data = tokenize_examples([long], tokenizer, ResponseFormat(4, 12, prompt_tail_tokens=3))
    prompt = data[0]["input_ids"][data[0]["instruction_mask"]]
    assert len(prompt) == 12 and data.truncated == 1
    assert tokenizer.decode(prompt[-3:]) == "word summary :"  # the template's closing words survive


def test_classification_labels_have_one_position_no_end_token(tokenizer):
    words = {0: "negative", 1: "positive"}
    data = tokenize_examples([Example("great film", "positive", label=1), Example("bad", "negative", label=0)],
                             tokenizer, ResponseFormat(1, 16), label_words=words)
    assert [int(r["generate_mask"].sum()) for r in data.rows] == [1, 1] and data.end_id is None
    assert data.label_token_ids == {0: tokenizer.convert_tokens_to_ids("negative"),
                                    1: tokenizer.convert_tokens_to_ids("positive")}
    with pytest.raises(ValueError, match="single tokens"):
        tokenize_examples([Example("x", "y", label=0)], tokenizer, ResponseFormat(1, 8), {0: "unbelievably", 1: "ok"})


def test_format_validation_names_field(tokenizer):
    with pytest.raises(ConfigError, match="response_budget"):
        ResponseFormat(response_budget=-1)
    with pytest.raises(ConfigError, match="response_budget"):
        tokenize_examples([Example("q", "a")], tokenizer, ResponseFormat(1, 8))  # no room for the end token
