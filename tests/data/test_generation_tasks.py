"""Generation-task loaders (data/generation_tasks.py): real files from ../shared/data (skipped
when absent) with their known row counts, carving properties, and malformed files in tmp_path."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

from lora_diffusion.data import generation_tasks as gt
from lora_diffusion.data.examples import TASKS, DataError, task_names

NAMES = ("squad", "gsm8k", "xsum", "wmt14_en_de", "commongen", "strategyqa", "stsb", "wnli")

# (task, split, expected rows): counted from the files (README), the carves as documented in notes
COUNTS = [
    ("squad", "train", 9_482), ("squad", "test", 1_088),
    ("gsm8k", "train", 7_473), ("gsm8k", "test", 1_319),
    ("xsum", "train", 749), ("xsum", "test", 250),  # 1,000 rows, one with an empty document dropped
    ("wmt14_en_de", "train", 3_000), ("wmt14_en_de", "test", 2_737),
    ("commongen", "train", 39_069), ("commongen", "dev", 993),
    ("strategyqa", "train", 1_890), ("strategyqa", "test", 400),
    ("stsb", "train", 5_749), ("stsb", "dev", 1_500),
    ("wnli", "train", 635), ("wnli", "dev", 71),
]


@cache
def _load(root: Path, name: str, split: str):
    spec = TASKS[name]
    return spec.load(root / spec.data_subdir, split)


# --------------------------------------------------------------------------- registry


def test_every_task_is_registered_with_consistent_budgets():
    assert set(NAMES) <= set(task_names())
    for name in NAMES:
        spec = TASKS[name]
        assert spec.eval_split in spec.splits and spec.data_subdir and spec.template and spec.notes
        assert spec.max_prompt_len % 16 == 0 and spec.max_prompt_len <= 384
        assert spec.max_prompt_len + spec.response_budget + 3 <= 512
        if spec.kind == "classification":
            assert spec.response_budget == 1 and spec.label_words == {0: "no", 1: "yes"}
        else:
            assert spec.response_budget % 8 == 0 and spec.response_budget <= 160
            assert "holds" in spec.notes and "% of train responses" in spec.notes  # measured coverage


def test_label_words_are_single_tokens(tokenizer):
    for name in NAMES:
        for word in TASKS[name].label_words.values():
            assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1


def test_squad_question_comes_before_context():
    template = TASKS["squad"].template
    assert template.index("{question}") < template.index("{context}")


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name, split, count", COUNTS)
def test_real_files_load_with_known_counts(shared_data, name, split, count):
    rows = _load(shared_data, name, split)
    assert len(rows) == count
    spec = TASKS[name]
    prefix = spec.template.split("{")[0]
    for ex in rows:
        assert ex.prompt.strip() and ex.prompt.startswith(prefix) and ex.response.strip()
        assert ex.answers and all(a.strip() for a in ex.answers)
        if spec.kind == "classification":
            assert ex.label in spec.label_words and ex.response == spec.label_words[ex.label]
        else:
            assert ex.label is None and (name == "gsm8k" or ex.response == ex.answers[0])  # gsm8k: see below
    if spec.kind == "classification":
        assert {ex.label for ex in rows} == set(spec.label_words)


def _squad_titles(shared_data: Path) -> dict[str, str]:
    data = json.loads((shared_data / "squad_v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    return {qa["id"]: art["title"] for art in data["data"] for par in art["paragraphs"] for qa in par["qas"]}


def test_squad_carve_is_by_article(shared_data):
    title = _squad_titles(shared_data)
    train, test = _load(shared_data, "squad", "train"), _load(shared_data, "squad", "test")
    assert len(test) >= 1_000 and len(train) + len(test) == len(title) == 10_570
    assert not {ex.id for ex in train} & {ex.id for ex in test}
    assert not {title[ex.id] for ex in train} & {title[ex.id] for ex in test}
    contexts = lambda rows: {ex.prompt.split(" context: ", 1)[1] for ex in rows}  # noqa: E731
    assert not contexts(train) & contexts(test)
    for ex in test:
        assert ex.references == tuple(dict.fromkeys(ex.references)) and ex.response == ex.references[0]


@pytest.mark.parametrize("name", ["squad", "xsum", "strategyqa"])
def test_carving_is_deterministic(shared_data, name):
    spec = TASKS[name]
    directory = shared_data / spec.data_subdir
    for split in spec.splits:
        assert spec.load(directory, split) == _load(shared_data, name, split)
    train = {ex.id for ex in _load(shared_data, name, "train")}
    assert not train & {ex.id for ex in _load(shared_data, name, "test")}


def test_gsm8k_responses_drop_calculator_annotations(shared_data):
    for split in ("train", "test"):
        for ex in _load(shared_data, "gsm8k", split):
            assert "####" in ex.response and "<<" not in ex.response and ">>" not in ex.response
            assert ex.response.splitlines()[-1].startswith("####")
            assert ex.references[0].split("####")[-1] == ex.response.split("####")[-1]


def test_stsb_responses_have_one_length(shared_data):
    for split in ("train", "dev"):
        rows = _load(shared_data, "stsb", split)
        assert all(re.fullmatch(r"\d\.\d", ex.response) and ex.references == (ex.response,) for ex in rows)


def test_commongen_dev_keeps_every_reference(shared_data):
    dev = _load(shared_data, "commongen", "dev")
    assert sum(len(ex.references) for ex in dev) == 4_018
    assert dev[0].prompt == "concepts: field, look, stand sentence:"
    assert "_" not in "".join(ex.prompt for ex in dev)  # POS tags dropped


# --------------------------------------------------------------------------- small files (no shared data)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_gsm8k_bad_json_line_names_file_and_line(tmp_path):
    good = json.dumps({"question": "What is 2+3?", "answer": "2+3 = <<2+3=5>>5\n#### 5"})
    _write(tmp_path / "train.jsonl", good + "\n{not json\n")
    with pytest.raises(DataError, match=r"train\.jsonl:2: bad JSON"):
        TASKS["gsm8k"].load(tmp_path, "train")
    _write(tmp_path / "train.jsonl", good + "\n" + json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl:2: .*####"):
        TASKS["gsm8k"].load(tmp_path, "train")
    _write(tmp_path / "train.jsonl", good + "\n")
    [ex] = TASKS["gsm8k"].load(tmp_path, "train")
    assert ex.prompt == "question: What is 2+3? answer:" and ex.response == "2+3 = 5\n#### 5"
    assert ex.references == ("2+3 = <<2+3=5>>5\n#### 5",)


def test_xsum_missing_field_names_file_and_line(tmp_path):
    _write(tmp_path / "test_1000.jsonl", json.dumps({"id": "1", "document": "d", "summary": "s"}) + "\n"
           + json.dumps({"id": "2", "summary": "s"}) + "\n")
    with pytest.raises(DataError, match=r"test_1000\.jsonl:2: missing field 'document'"):
        TASKS["xsum"].load(tmp_path, "test")


def test_wmt_mismatched_line_counts_name_both_files(tmp_path):
    stem = "toyende_val3000.tok"
    _write(tmp_path / f"{stem}.en", "one\ntwo\nthree\n")
    _write(tmp_path / f"{stem}.de", "eins\nzwei\n")
    with pytest.raises(DataError, match=rf"{stem}\.en has 3 lines but .*{stem}\.de has 2"):
        TASKS["wmt14_en_de"].load(tmp_path, "train")
    _write(tmp_path / f"{stem}.de", "eins\n\ndrei\n")
    with pytest.raises(DataError, match=rf"{stem}\.de:2: empty line"):
        TASKS["wmt14_en_de"].load(tmp_path, "train")
    _write(tmp_path / f"{stem}.de", "eins\nzwei\ndrei\n")
    rows = TASKS["wmt14_en_de"].load(tmp_path, "train")
    assert rows[1].prompt == "translate english to german: two german:" and rows[1].response == "zwei"


def test_commongen_layouts(tmp_path):
    _write(tmp_path / "commongen.train.src_alpha.txt", "dog frisbee catch\nsea town")
    _write(tmp_path / "commongen.train.tgt.txt", "A dog catches a frisbee.\nA town by the sea.")
    train = TASKS["commongen"].load(tmp_path, "train")
    assert [ex.prompt for ex in train] == ["concepts: dog, frisbee, catch sentence:", "concepts: sea, town sentence:"]
    _write(tmp_path / "commongen.dev.jsonl",
           json.dumps({"concept_set": "dog_N#run_V", "scene": ["A dog runs.", "Dogs run."], "reason": []}) + "\n"
           + json.dumps({"concept_set": "cat_N", "scene": []}) + "\n")
    with pytest.raises(DataError, match=r"commongen\.dev\.jsonl:2: 'scene'"):
        TASKS["commongen"].load(tmp_path, "dev")
    _write(tmp_path / "commongen.dev.jsonl", json.dumps({"concept_set": "dog_N#run_V", "scene": ["A dog runs.",
                                                                                                 "Dogs run."]}))
    [ex] = TASKS["commongen"].load(tmp_path, "dev")
    assert ex.prompt == "concepts: dog, run sentence:" and ex.response == "A dog runs."
    assert ex.references == ("A dog runs.", "Dogs run.")


def test_glue_tsv_errors_and_formats(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tg\tf\t2012\t1\tnone\tnone\tA cat.\tA small cat.\t{}\n"
    _write(tmp_path / "stsb" / "dev.tsv", header + row.format("4.750") + row.format("0.600"))
    rows = TASKS["stsb"].load(tmp_path / "stsb", "dev")
    assert [ex.response for ex in rows] == ["4.8", "0.6"]
    assert rows[0].prompt == "sentence one: A cat. sentence two: A small cat. similarity:"
    _write(tmp_path / "stsb" / "dev.tsv", header + row.format("4.750") + row.format("high"))
    with pytest.raises(DataError, match=r"dev\.tsv:3: score 'high'"):
        TASKS["stsb"].load(tmp_path / "stsb", "dev")
    _write(tmp_path / "stsb" / "dev.tsv", header.replace("score", "similarity") + row.format("1.0"))
    with pytest.raises(DataError, match=r"dev\.tsv:1: header lacks \['score'\]"):
        TASKS["stsb"].load(tmp_path / "stsb", "dev")
    _write(tmp_path / "wnli" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA\tB\t1\n1\tC\tD\t0\n2\tE\n")
    with pytest.raises(DataError, match=r"train\.tsv:4: expected 4 columns, got 2"):
        TASKS["wnli"].load(tmp_path / "wnli", "train")
    _write(tmp_path / "wnli" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA\tB\t1\n1\tC\tD\t0\n")
    rows = TASKS["wnli"].load(tmp_path / "wnli", "train")
    assert [(ex.label, ex.response) for ex in rows] == [(1, "yes"), (0, "no")]  # 1 = entailment


def test_json_records_are_named(tmp_path):
    records = [{"qid": f"q{i}", "question": f"Is {i} even?", "answer": i % 2 == 0} for i in range(5)]
    records[3]["answer"] = "yes"
    _write(tmp_path / "strategyqa_train.json", json.dumps(records))
    with pytest.raises(DataError, match=r"strategyqa_train\.json: record 3: .*'answer' is true or false"):
        TASKS["strategyqa"].load(tmp_path, "train")
    _write(tmp_path / "strategyqa_train.json", '[{"qid": "a",\n "answer": tru}]')
    with pytest.raises(DataError, match=r"strategyqa_train\.json:2: bad JSON"):
        TASKS["strategyqa"].load(tmp_path, "train")


def _squad_file(path: Path, questions_per_article: list[int]) -> None:
    articles = [{"title": f"T{a}", "paragraphs": [{"context": f"context of {a}", "qas": [
        {"id": f"{a}-{q}", "question": f"question {q}?",
         "answers": [{"text": "x", "answer_start": 0}, {"text": "y", "answer_start": 0}, {"text": "x"}]}
        for q in range(n)]}]} for a, n in enumerate(questions_per_article)]
    _write(path / "dev-v1.1.json", json.dumps({"version": "1.1", "data": articles}))


def test_squad_small_file_carves_by_article(tmp_path):
    _squad_file(tmp_path, [400] * 5)
    train, test = TASKS["squad"].load(tmp_path, "train"), TASKS["squad"].load(tmp_path, "test")
    assert len(test) == 1_200 and len(train) == 800  # three whole articles reach 1,000 questions
    assert not {ex.id.split("-")[0] for ex in train} & {ex.id.split("-")[0] for ex in test}
    ex = test[0]
    assert ex.prompt.startswith("question: question 0? context: context of") and ex.prompt.endswith(" answer:")
    assert ex.response == "x" and ex.references == ("x", "y")
    _squad_file(tmp_path, [400, 400])
    with pytest.raises(DataError, match="cannot give the eval side 1000 questions"):
        TASKS["squad"].load(tmp_path, "test")
    data = json.loads((tmp_path / "dev-v1.1.json").read_text())
    data["data"][1]["paragraphs"][0]["qas"][7]["answers"] = []
    _write(tmp_path / "dev-v1.1.json", json.dumps(data))
    with pytest.raises(DataError, match=r"dev-v1\.1\.json: article 1 \(T1\) paragraph 0 question 7 \(id 1-7\)"):
        TASKS["squad"].load(tmp_path, "train")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"data file not found: .*dev-v1\.1\.json"):
        TASKS["squad"].load(tmp_path, "train")
    assert gt.SEED == 0
