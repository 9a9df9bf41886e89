import string

import pytest

from lora_diffusion.data.encoding import ResponseFormat, label_token_ids, tokenize_examples
from lora_diffusion.data.examples import DataError, Example, get_task, task_names

CLASSIFICATION = [n for n in task_names() if get_task(n).kind == "classification"]

# (task, folder under ../shared/data, split, expected rows): counts from the data README / files
SHARED = [
    ("sst2", "sst2", "train", 67_349), ("sst2", "sst2", "dev", 872),
    ("trec", "trec", "train", 5_452), ("trec", "trec", "test", 500),
    ("ag_news", "ag_news", "test", 7_600), ("ag_news", "ag_news", "train", 10_001),
    ("mrpc", "glue/MRPC", "train", 3_668), ("mrpc", "glue/MRPC", "dev", 408),
    ("rte", "glue/RTE", "dev", 277), ("cola", "glue/CoLA", "dev", 1_043), ("qnli", "glue/QNLI", "dev", 5_463),
]


@pytest.mark.parametrize("name, folder, split, count", SHARED)
def test_real_files_load_with_known_row_counts(shared_data, name, folder, split, count):
    spec = get_task(name)
    rows = spec.load(shared_data / folder, split)
    assert len(rows) == count and spec.data_subdir == folder
    assert {ex.label for ex in rows} == set(range(len(spec.label_words)))
    assert all(ex.response == spec.label_words[ex.label] for ex in rows[:50])


# (task, folder, split, share of prompts longer than the task's budget, at most): a sentence pair whose
# second sentence loses its middle is a different task (MRPC at 60 tokens: 47% of rows were cut)
FITS = [("mrpc", "glue/MRPC", "train", 0.0), ("mrpc", "glue/MRPC", "dev", 0.0), ("rte", "glue/RTE", "dev", 0.02),
        ("qnli", "glue/QNLI", "dev", 0.02), ("sst2", "sst2", "dev", 0.0), ("trec", "trec", "test", 0.0)]


@pytest.mark.parametrize("name, folder, split, most", FITS)
def test_prompts_fit_their_budget(shared_data, tokenizer, name, folder, split, most):
    spec = get_task(name)
    rows = spec.load(shared_data / folder, split)
    data = tokenize_examples(rows, tokenizer, ResponseFormat(1, spec.max_prompt_len), spec.label_words)
    assert data.truncated <= most * len(rows)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_templates_and_single_token_verbalisers_round_trip(name, tokenizer):
    spec = get_task(name)
    ids = label_token_ids(spec.label_words, tokenizer)  # raises unless every label word is one token
    assert len(set(ids.values())) == len(ids)
    fields = list(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(spec.template) if f))
    prompt = spec.template.format(**dict(zip(fields, ["the first text", "the second text"])))
    examples = [Example(prompt, word, label=label) for label, word in spec.label_words.items()]
    data = tokenize_examples(examples, tokenizer, ResponseFormat(1, spec.max_prompt_len), spec.label_words)
    for i, label in enumerate(spec.label_words):
        row = data[i]
        assert row["generate_mask"].sum() == 1  # same response length for every label: no leak
        assert tokenizer.decode(row["input_ids"][row["generate_mask"]]) == spec.label_words[label]
        instr = tokenizer.decode(row["input_ids"][row["instruction_mask"]])
        assert "the first text" in instr and (len(fields) < 2 or "the second text" in instr)
    lengths = {int(data[i]["input_ids"].shape[0]) for i in range(len(data))}
    assert len(lengths) == 1


def test_malformed_rows_name_file_and_line(tmp_path):
    (tmp_path / "train.csv").write_text('0,fine question\n9,"bad label"\n')
    with pytest.raises(DataError, match=r"train.csv:2: unknown label '9'"):
        get_task("trec").load(tmp_path, "train")
    (tmp_path / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match=r"dev.tsv:2: unknown label 'maybe'"):
        get_task("rte").load(tmp_path, "dev")
    (tmp_path / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\n")
    with pytest.raises(DataError, match=r"dev.tsv:2: expected at least 4 columns"):
        get_task("rte").load(tmp_path, "dev")
    with pytest.raises(DataError, match="no 'train' split"):
        get_task("qnli").load(tmp_path, "train")
    with pytest.raises(DataError, match="known tasks"):
        get_task("imdb")
