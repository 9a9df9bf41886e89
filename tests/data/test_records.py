import json

import pytest

from lora_diffusion.config import ConfigError
from lora_diffusion.data.examples import DataError
from lora_diffusion.data.records import DataFileConfig, read_records

HEADER = {"csv": b"prompt,response\n", "tsv": b"prompt\tresponse\n"}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def table(fmt, *rows):
    """A CSV / TSV body from rows of cells (no quoting needed in these tests)."""
    sep = "," if fmt == "csv" else "\t"
    return "".join(sep.join(r) + "\n" for r in rows)


def message(path, **kw):
    with pytest.raises(DataError) as err:
        read_records(path, **kw)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_each_format_reads_prompts_responses_and_ids(tmp_path, fmt):
    if fmt == "jsonl":
        body = '{"prompt": " What is 2+2? ", "response": "4"}\n\n{"prompt": "Capital of France?", "response": "Paris"}\n'
    else:
        body = table(fmt, ["prompt", "response"], [" What is 2+2? ", "4"], [], ["Capital of France?", "Paris"])
    result = read_records(write(tmp_path, f"train.{fmt}", body))
    assert [(e.prompt, e.response) for e in result.examples] == [("What is 2+2?", "4"), ("Capital of France?", "Paris")]
    assert [e.id for e in result.examples] == [f"train.{fmt}:{n}" for n in ((1, 3) if fmt == "jsonl" else (2, 4))]
    assert result.skipped == [] and result.layout == "prompt/response"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_alpaca_layout_with_and_without_input(tmp_path, fmt):
    rows = [{"instruction": "Translate to French.", "input": "cat", "output": "chat"},
            {"instruction": "Name a colour.", "input": "", "output": "red"}]
    if fmt == "jsonl":
        body = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        body = table(fmt, list(rows[0]), *[list(r.values()) for r in rows])
    result = read_records(write(tmp_path, f"a.{fmt}", body))
    assert result.layout == "instruction/input/output"
    assert [(e.prompt, e.response) for e in result.examples] == [
        ("Translate to French.\ncat", "chat"), ("Name a colour.", "red")]


def test_alpaca_json_array_file_and_missing_input(tmp_path):
    rows = [{"instruction": "Say hi.", "output": "hi"}, {"instruction": "Add.", "input": "1+1", "output": 2}]
    path = write(tmp_path, "alpaca_data.json", json.dumps(rows, indent=4))
    result = read_records(path)
    assert [(e.prompt, e.response, e.id) for e in result.examples] == [
        ("Say hi.", "hi", "alpaca_data.json:2"), ("Add.\n1+1", "2", "alpaca_data.json:6")]
    assert read_records(write(tmp_path, "one.json", json.dumps(rows))).examples[1].id == "one.json:1"
    bad = write(tmp_path, "bad.json", '[\n  {"instruction": "x", "output": "y"},\n  {"instruction": "x",}\n]\n')
    assert message(bad).startswith(f"{bad}:3: invalid JSON: ")
    empty = write(tmp_path, "e.json", json.dumps([{"instruction": "x", "output": "y"}, {"instruction": "z"}], indent=1))
    assert message(empty) == f"{empty}:6: field 'output': missing"


def test_renamed_fields_turn_off_alpaca_detection(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"instruction": "x", "output": "y"}\n')
    cfg = DataFileConfig(prompt_field="question", response_field="answer")
    assert message(path, cfg=cfg) == f"{path}:1: field 'question': missing"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_template_builds_the_prompt(tmp_path, fmt):
    if fmt == "jsonl":
        body = '{"question": "2+2?", "context": "", "response": "4"}\n{"question": "3+3?", "response": "6"}\n'
    else:
        body = table(fmt, ["question", "context", "response"], ["2+2?", "", "4"], ["3+3?"])
    cfg = DataFileConfig(template="question: {question} context: {context} answer:")
    path = write(tmp_path, f"t.{fmt}", body)
    line = 2 if fmt == "jsonl" else 3
    assert message(path, cfg=cfg) == f"{path}:{line}: field 'context': missing"
    result = read_records(path, DataFileConfig(template=cfg.template, skip_bad_rows=True))
    assert result.layout == "template" and len(result.skipped) == 1
    assert result.examples[0].prompt == "question: 2+2? context:  answer:"


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_template_field_absent_from_header_is_named_at_line_1(tmp_path, fmt):
    path = write(tmp_path, f"t.{fmt}", table(fmt, ["question", "response"], ["2+2?", "4"]))
    cfg = DataFileConfig(template="Q: {question} ({topic})")
    assert message(path, cfg=cfg) == f"{path}:1: field 'topic': not in the header row (columns: question, response)"


def test_json_numbers_and_booleans_become_strings_and_id_field(tmp_path):
    path = write(tmp_path, "n.jsonl", '{"prompt": 12, "response": 4.5, "id": "a"}\n{"prompt": true, "response": 0, "id": 7}\n')
    result = read_records(path, DataFileConfig(id_field="id"))
    assert [(e.prompt, e.response, e.id) for e in result.examples] == [("12", "4.5", "a"), ("True", "0", "7")]


JSONL_BAD = [
    ('{"prompt": "q"}', "field 'response': missing"),
    ('{"prompt": "q", "response": "  "}', "field 'response': empty"),
    ('{"prompt": null, "response": "a"}', "field 'prompt': null"),
    ('{"prompt": ["q"], "response": "a"}', "field 'prompt': not a string (got list)"),
    ('{"prompt": "q", "response": {"a": 1}}', "field 'response': not a string (got object)"),
    ('{"prompt": "q", "response": "a",', "invalid JSON: Expecting property name enclosed in double quotes (column 33)"),
    ('["q", "a"]', "not a JSON object (got list)"),
    (b'{"prompt": "caf\xe9", "response": "a"}', "not valid utf-8 (byte 0xe9 at column 16)"),
]
TABLE_BAD = [
    (["q"], "field 'response': missing"),
    (["q", " "], "field 'response': empty"),
    (["", "a"], "field 'prompt': empty"),
    (["q", "a", "extra"], "3 cells but the header names 2 columns"),
    ([b"caf\xe9", b"a"], "not valid utf-8 (byte 0xe9 at column 4)"),
]
MATRIX = [("jsonl", row, want) for row, want in JSONL_BAD] + [
    (fmt, row, want) for fmt in ("csv", "tsv") for row, want in TABLE_BAD]


def bad_file(tmp_path, fmt, row):
    """Line 3 holds the bad row, after a good line and a blank line (JSONL) or header + good row."""
    if fmt == "jsonl":
        head, bad = b'{"prompt": "ok", "response": "fine"}\n\n', row if isinstance(row, bytes) else row.encode()
    else:
        sep = b"," if fmt == "csv" else b"\t"
        head = HEADER[fmt] + b"ok" + sep + b"fine\n"
        bad = sep.join(c if isinstance(c, bytes) else c.encode() for c in row)
    return write(tmp_path, f"data.{fmt}", head + bad + b"\n")


@pytest.mark.parametrize(("fmt", "row", "want"), MATRIX)
def test_every_bad_row_names_file_line_and_field(tmp_path, fmt, row, want):
    path = bad_file(tmp_path, fmt, row)
    assert message(path) == f"{path}:3: {want}"
    result = read_records(path, DataFileConfig(skip_bad_rows=True))
    assert result.skipped == [f"{path}:3: {want}"]
    assert [(e.prompt, e.response) for e in result.examples] == [("ok", "fine")]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_binary_missing_and_empty_files(tmp_path, fmt):
    binary = write(tmp_path, f"b.{fmt}", b"PK\x03\x04\n\x00\x00garbage")
    assert message(binary) == f"{binary}:2: binary data (NUL byte); expected a {fmt} text file"
    missing = tmp_path / f"nope.{fmt}"
    assert message(missing) == f"data file not found: {missing}"
    empty = write(tmp_path, f"e.{fmt}", "\n\n")
    assert message(empty).startswith(f"{empty}: no usable rows")


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_headerless_table_is_refused_at_line_1(tmp_path, fmt):
    path = write(tmp_path, f"h.{fmt}", table(fmt, ["What is 2+2?", "4"], ["Capital of France?", "Paris"]))
    text = message(path)
    assert text.startswith(f"{path}:1: header row missing: the first row must name the columns prompt, response")
    assert "instruction, input, output" in text and "'What is 2+2?'" in text
    partial = write(tmp_path, f"p.{fmt}", table(fmt, ["prompt", "answer"], ["q", "a"]))
    assert message(partial) == f"{partial}:1: field 'response': not in the header row (columns: prompt, answer)"


def test_unknown_extension_and_explicit_format(tmp_path):
    path = write(tmp_path, "data.txt", '{"prompt": "q", "response": "a"}\n')
    assert "cannot tell the format from the extension '.txt'" in message(path)
    assert read_records(path, DataFileConfig(format="jsonl")).examples[0].response == "a"


def test_skip_bad_rows_counts_and_keeps_the_good_ones(tmp_path):
    lines = [b'{"prompt": "a", "response": "1"}', b"{oops", b'{"prompt": "b"}', b'"just a string"',
             b'{"prompt": "\xff", "response": "x"}', b'{"prompt": "c", "response": "3"}']
    path = write(tmp_path, "mixed.jsonl", b"\n".join(lines))
    result = read_records(path, DataFileConfig(skip_bad_rows=True))
    assert [e.prompt for e in result.examples] == ["a", "c"] and len(result.skipped) == 4
    assert [s.split(": ", 1)[0] for s in result.skipped] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert result.skipped[3] == f"{path}:5: not valid utf-8 (byte 0xff at column 13)"
    all_bad = write(tmp_path, "bad.jsonl", "{}\n[]\n")
    assert message(all_bad, cfg=DataFileConfig(skip_bad_rows=True)) == f"{all_bad}: no usable rows (2 bad rows skipped)"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_require_response_false_allows_missing_or_empty_responses(tmp_path, fmt):
    if fmt == "jsonl":
        body = '{"prompt": "a"}\n{"prompt": "b", "response": ""}\n{"prompt": "c", "response": null}\n'
    else:
        body = table(fmt, ["prompt"], ["a"], ["b"])
    path = write(tmp_path, f"g.{fmt}", body)
    with pytest.raises(DataError):
        read_records(path)
    result = read_records(path, require_response=False)
    assert [e.response for e in result.examples] == [""] * len(result.examples)
    assert [e.prompt for e in result.examples][:2] == ["a", "b"]


def test_multi_line_quoted_csv_cell_reports_the_starting_line(tmp_path):
    body = 'prompt,response\n"Write a poem\nabout cats,\nplease",Cats purr.\n"q2\nmore",\nq3,a3\n'
    path = write(tmp_path, "m.csv", body)
    assert message(path) == f"{path}:5: field 'response': empty"
    result = read_records(path, DataFileConfig(skip_bad_rows=True))
    assert result.examples[0].prompt == "Write a poem\nabout cats,\nplease"
    assert [e.id for e in result.examples] == ["m.csv:2", "m.csv:7"]
    unclosed = write(tmp_path, "u.csv", 'prompt,response\nq,a\n"open,a\n')
    assert message(unclosed) == f"{unclosed}:3: malformed CSV: unexpected end of data"


def test_bom_crlf_and_bad_encoding_inside_a_quoted_cell(tmp_path):
    path = write(tmp_path, "w.csv", b"\xef\xbb\xbfprompt,response\r\nq,a\r\n")
    assert [(e.prompt, e.response, e.id) for e in read_records(path).examples] == [("q", "a", "w.csv:2")]
    jl = write(tmp_path, "w.jsonl", b'\xef\xbb\xbf{"prompt": "q", "response": "a"}\r\n')
    assert read_records(jl).examples[0].id == "w.jsonl:1"
    cell = write(tmp_path, "c.csv", b'prompt,response\n"x\ny\xe9",a\nq,b\n')
    assert message(cell) == f"{cell}:3: not valid utf-8 (byte 0xe9 at column 2)"
    assert [e.id for e in read_records(cell, DataFileConfig(skip_bad_rows=True)).examples] == ["c.csv:4"]
    latin = write(tmp_path, "l.tsv", b"prompt\tresponse\ncaf\xe9\tok\n")
    assert read_records(latin, DataFileConfig(encoding="latin-1")).examples[0].prompt == "caf\u00e9"


@pytest.mark.parametrize(("kw", "field"), [
    ({"format": "xml"}, "format"),
    ({"template": "Q: {}"}, "template"),
    ({"template": "Q: {0}"}, "template"),
    ({"template": "Q: {oops"}, "template"),
    ({"template": "no fields"}, "template"),
    ({"encoding": "utf-16"}, "encoding"),
    ({"encoding": "no-such-codec"}, "encoding"),
    ({"response_field": "prompt"}, "response_field"),
    ({"prompt_field": " "}, "prompt_field"),
])
def test_config_validation_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        DataFileConfig(**kw)
