"""Zero-shot composite tasks: exact ground truth built from the two source tasks, fixed by seed."""

import pytest

from lora_diffusion.data.composite import PARTS, build_composite, part_accuracy
from lora_diffusion.data.examples import Example, get_task, task_names


def _examples(prefix, words, n):
    return [Example(f"{prefix} {i}", words[i % len(words)], label=i % len(words)) for i in range(n)]


def test_build_composite_pairs_rows_with_both_answers_and_is_seeded():
    a = _examples("review", ["positive", "negative"], 7)
    b = _examples("question", ["location", "human", "number"], 5)
    rows = build_composite(a, b)
    assert len(rows) == 5
    for row in rows:
        i, j = (int(x[1:]) for x in row.id.split("+"))
        assert row.prompt == f"{a[i].prompt} {b[j].prompt}"
        assert row.response == f"{a[i].response} {b[j].response}" and row.answers == (row.response,)
    assert [r.id for r in build_composite(a, b)] == [r.id for r in rows]  # fixed by the seed
    assert [r.id for r in build_composite(a, b, seed=5)] != [r.id for r in rows]
    assert len(build_composite(a, b, cap=3)) == 3
    with pytest.raises(ValueError, match="classification examples"):
        build_composite([Example("x", "y")], b)


def test_part_accuracy():
    got = part_accuracy(["positive location", "negative human", "positive", "Positive  Number"],
                        ["positive location", "positive human", "positive number", "positive number"])
    assert got == {"both": 50.0, "first": 75.0, "second": 75.0, "first_any": 75.0, "second_any": 75.0,
                   "words": 7 / 4}
    # order-free: the two words swapped, or only the second task answered
    swapped = part_accuracy(["location positive", "human", ""], ["positive location", "negative human", "positive number"])
    assert swapped == {"both": 0.0, "first": 0.0, "second": 0.0, "first_any": 100 / 3, "second_any": 200 / 3,
                       "words": 1.0}


def test_part_accuracy_of_a_predictions_file(tmp_path):
    import json

    from lora_diffusion.data.composite import part_accuracy_file

    rows = [{"id": "a", "prompt": "p", "prediction": "positive human", "references": ["positive location"]},
            {"id": "b", "prompt": "q", "prediction": "negative number", "references": ["negative number"]}]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert part_accuracy_file(tmp_path / "predictions.jsonl") == {"both": 50.0, "first": 100.0, "second": 50.0,
                                                                 "first_any": 100.0, "second_any": 50.0,
                                                                 "words": 2.0, "rows": 2}


def test_composite_tasks_are_registered():
    assert set(PARTS) <= set(task_names())
    spec = get_task("sst2_trec")
    assert spec.kind == "generation" and spec.metric == "accuracy" and spec.eval_split == "test"


@pytest.mark.parametrize("name", sorted(PARTS))
def test_composite_tasks_from_shared_data(shared_data, name):
    first, second = (get_task(t) for t in PARTS[name])
    rows = get_task(name).load(shared_data, "test")
    assert len(rows) == 500
    a = first.load(shared_data / first.data_subdir, first.eval_split)
    b = second.load(shared_data / second.data_subdir, second.eval_split)
    words_a, words_b = set(first.label_words.values()), set(second.label_words.values())
    for row in rows[:50]:
        i, j = (int(x[1:]) for x in row.id.split("+"))
        assert row.prompt == f"{a[i].prompt} {b[j].prompt}"
        wa, wb = row.response.split()
        assert (wa, wb) == (a[i].response, b[j].response) and wa in words_a and wb in words_b
    assert len({r.id for r in rows}) == 500


def test_single_parts_as_free_text_share_the_composite_layout(shared_data):
    for name in ("sst2", "trec", "ag_news"):
        spec, text = get_task(name), get_task(f"{name}_text")
        assert text.kind == "generation" and text.response_budget == get_task("sst2_trec").response_budget
        rows = text.load(shared_data, "test")[:20]
        source = spec.load(shared_data / spec.data_subdir, spec.eval_split)[:20]
        assert [(r.prompt, r.response) for r in rows] == [(s.prompt, s.response) for s in source]
        assert all(r.label is None and r.response in spec.label_words.values() for r in rows)
