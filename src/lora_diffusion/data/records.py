"""Reader for users' own instruction-tuning files (``finetune --data-file``, ``evaluate``, ``generate``).

Formats (``DataFileConfig.format``; ``auto`` picks by extension: ``.jsonl``/``.json`` -> jsonl,
``.csv`` -> csv, ``.tsv`` -> tsv, anything else is refused):

* jsonl: one JSON object per line, blank lines ignored. A ``.json`` file holding one JSON
  array of objects (as Alpaca's ``alpaca_data.json``) is read too, each object numbered by the
  line it starts on; a syntax error in such an array cannot be skipped.
* csv / tsv: a header row naming the columns is required. CSV uses standard quoting (a quoted
  cell may span lines; its record is numbered by the line it starts on); TSV is split on tabs
  with no quoting at all.

Layouts: ``prompt``/``response`` fields (renamable); when those are absent and were not renamed,
Alpaca's ``instruction``/``input``/``output`` (prompt = instruction + "\\n" + input when input is
non-empty); or ``template`` (prompt = ``template.format(**record)``). Strings are stripped, JSON
numbers and booleans go through ``str()``; null, lists, objects, or an empty prompt / response
make a bad row. Files are read as bytes and decoded line by line (a UTF-8 BOM is accepted).

Every bad row is one line, ``"{path}:{line}: field '{name}': {reason}"`` (or
``"{path}:{line}: {reason}"`` when no single field is at fault: invalid JSON, not an object,
bytes not valid in the encoding), raised as ``DataError`` or, with ``skip_bad_rows``, collected
in ``ReadResult.skipped`` while reading goes on. Lines are 1-based, as in an editor.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .examples import DataError, Example

FORMATS = ("auto", "jsonl", "csv", "tsv")
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
ALPACA = "instruction/input/output"


def template_fields(template: str) -> list[str]:
    """The record fields a ``str.format`` template names (``{a.b}`` and ``{a[0]}`` name ``a``)."""
    names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
    return list(dict.fromkeys(re.split(r"[.\[]", n, maxsplit=1)[0] for n in names))


@dataclass
class DataFileConfig:
    """How to read one data file; validated when built (``ConfigError`` names the field)."""

    format: str = "auto"
    prompt_field: str = "prompt"
    response_field: str = "response"
    template: str = ""  # e.g. "question: {question} answer:"; "" = the prompt field as is
    id_field: str = ""  # "" = ids are "<file name>:<line>"
    skip_bad_rows: bool = False
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        from ..config import require  # lazy: the CLI's configs embed this class

        require(self.format in FORMATS, "format", f"must be one of {FORMATS}, got {self.format!r}")
        for name in ("prompt_field", "response_field"):
            require(bool(getattr(self, name).strip()), name, "must not be empty")
        require(self.prompt_field != self.response_field, "response_field",
                f"must differ from prompt_field ({self.prompt_field!r})")
        try:
            names, problem = template_fields(self.template), ""
        except ValueError as err:
            names, problem = [], f"not a valid format string: {err}"
        require(not problem, "template", problem)
        require(all(n and not n.isdigit() for n in names), "template",
                "positional fields such as {} are not allowed; name record fields, e.g. {question}")
        require(not self.template or bool(names), "template", "names no record field, e.g. {question}")
        try:
            ascii_ok = b"a,\t\n".decode(self.encoding) == "a,\t\n"
        except (LookupError, ValueError):
            ascii_ok = False
        require(ascii_ok, "encoding", f"{self.encoding!r} is unknown or not ASCII-compatible; use utf-8")


@dataclass
class ReadResult:
    examples: list[Example]
    skipped: list[str] = field(default_factory=list)  # one "file:line: field: reason" per row
    layout: str = "prompt/response"  # "prompt/response", "instruction/input/output" or "template"


class _BadRow(Exception):
    def __init__(self, name: str | None, reason: str) -> None:
        super().__init__(f"field '{name}': {reason}" if name else reason)


def _kind(value: Any) -> str:
    return {list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _text(rec: Mapping[str, Any], name: str, optional: bool = False, allow_empty: bool = False) -> str:
    """One field as stripped text; a missing, null, non-scalar or (unless allowed) empty value is bad."""
    value = rec.get(name)
    if value is None:
        if optional:
            return ""
        raise _BadRow(name, "missing" if name not in rec else "null")
    if isinstance(value, (bool, int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise _BadRow(name, f"not a string (got {_kind(value)})")
    value = value.strip()
    if not value and not (optional or allow_empty):
        raise _BadRow(name, "empty")
    return value


def _layout(cfg: DataFileConfig, keys: Any) -> str:
    if cfg.template:
        return "template"
    default = (cfg.prompt_field, cfg.response_field) == ("prompt", "response")
    alpaca = default and "prompt" not in keys and ("instruction" in keys or "output" in keys)
    return ALPACA if alpaca else "prompt/response"


def _example(rec: Mapping[str, Any], layout: str, cfg: DataFileConfig, require_response: bool,
             default_id: str) -> Example:
    if layout == "template":
        values = {n: _text(rec, n, allow_empty=True) for n in template_fields(cfg.template)}
        try:
            prompt = cfg.template.format(**values).strip()
        except (ValueError, IndexError, KeyError, AttributeError) as err:
            raise _BadRow(None, f"template cannot format this record: {err!r}") from None
        if not prompt:
            raise _BadRow(None, "the template gives an empty prompt")
    elif layout == ALPACA:
        prompt, extra = _text(rec, "instruction"), _text(rec, "input", optional=True)
        prompt = f"{prompt}\n{extra}" if extra else prompt
    else:
        prompt = _text(rec, cfg.prompt_field)
    response = _text(rec, "output" if layout == ALPACA else cfg.response_field, optional=not require_response)
    ident = _text(rec, cfg.id_field) if cfg.id_field else default_id
    return Example(prompt=prompt, response=response, id=ident)


def _decode(path: Path, fmt: str, encoding: str) -> tuple[list[str], dict[int, str]]:
    """The file's lines (ends kept) and {line: reason} for lines not valid in ``encoding``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except OSError as err:
        raise DataError(f"cannot read data file {path}: {err.strerror}") from None
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataError(f"{path}:{line}: binary data (NUL byte); expected a {fmt} text file")
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "utf-8-sig") and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines, bad = [], {}
    for number, raw in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(raw.decode(encoding))
        except UnicodeDecodeError as err:
            column = len(raw[: err.start].decode(encoding, errors="replace")) + 1
            bad[number] = f"not valid {name} (byte 0x{raw[err.start]:02x} at column {column})"
            lines.append(raw.decode(encoding, errors="replace"))
    return lines, bad


def _json_records(path: Path, lines: list[str], bad: dict[int, str]) -> Iterator[tuple[int, Any]]:
    """(line, parsed value or _BadRow) per JSON Lines row, or per element of one JSON array."""
    text = "".join(lines)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):  # one array, as Alpaca's files
        if bad:
            raise DataError(f"{path}:{min(bad)}: {bad[min(bad)]}")
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
        decoder, gap, pos, seen, line = json.JSONDecoder(), re.compile(r"[ \t\r\n,]*"), text.index("[") + 1, 0, 1
        for _ in whole:
            start = gap.match(text, pos).end()
            line, seen = line + text.count("\n", seen, start), start
            value, pos = decoder.raw_decode(text, start)
            yield line, value
        return
    for number, raw in enumerate(lines, 1):
        if number in bad:
            yield number, _BadRow(None, bad[number])
        elif raw.strip():
            try:
                yield number, json.loads(raw.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                yield number, _BadRow(None, f"invalid JSON: {err.msg} (column {err.colno})")


def _table_records(path: Path, lines: list[str], bad: dict[int, str], fmt: str, cfg: DataFileConfig,
                   require_response: bool) -> tuple[str, Iterator[tuple[int, Any]]]:
    """The layout from the header row, and (line, record dict or _BadRow) per data row."""
    options: dict[str, Any] = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    reader = csv.reader(iter(lines), strict=True, **options)
    try:
        header = next(r for r in reader if any(c.strip() for c in r))
    except StopIteration:
        raise DataError(f"{path}: no usable rows (the file is empty)") from None
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: cannot read the header row: {err}") from None
    hline, header = reader.line_num, [c.strip() for c in header]
    if hline in bad:
        raise DataError(f"{path}:{hline}: {bad[hline]}")
    if len(set(header)) < len(header):
        raise DataError(f"{path}:{hline}: the header row names a column twice: {', '.join(header)}")
    layout = _layout(cfg, header)
    prompt = {"template": template_fields(cfg.template), ALPACA: ["instruction"]}.get(layout, [cfg.prompt_field])
    response = ["output" if layout == ALPACA else cfg.response_field] if require_response else []
    needed = list(dict.fromkeys(prompt + response + ([cfg.id_field] if cfg.id_field else [])))
    absent = [n for n in needed if n not in header]
    if absent and not set(header) & (set(needed) | {"prompt", "response", "instruction", "input", "output"}):
        alt = " (or instruction, input, output)" if layout == "prompt/response" and cfg.prompt_field == "prompt" else ""
        raise DataError(f"{path}:{hline}: header row missing: the first row must name the columns "
                        f"{', '.join(needed)}{alt}; it reads {', '.join(map(repr, header))}")
    if absent:
        raise DataError(f"{path}:{hline}: field '{absent[0]}': not in the header row (columns: {', '.join(header)})")

    def rows() -> Iterator[tuple[int, Any]]:
        done = hline
        while True:
            try:
                row: Any = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                row = _BadRow(None, f"malformed {fmt.upper()}: {err}")
            start, done = done + 1, reader.line_num
            broken = [n for n in range(start, done + 1) if n in bad]  # a record spans these lines
            if broken:
                start, row = broken[0], _BadRow(None, bad[broken[0]])
            elif isinstance(row, list) and len(row) > len(header):
                row = _BadRow(None, f"{len(row)} cells but the header names {len(header)} columns")
            if isinstance(row, _BadRow) or any(c.strip() for c in row):
                yield start, row if isinstance(row, _BadRow) else dict(zip(header, row))

    return layout, rows()


def read_records(path: str | Path, cfg: DataFileConfig | None = None,
                 require_response: bool = True) -> ReadResult:
    """Read a JSONL / CSV / TSV file of prompts and responses into ``Example``s (see the module doc)."""
    cfg, path = cfg or DataFileConfig(), Path(path)
    fmt = cfg.format
    if fmt == "auto":
        if path.suffix.lower() not in EXTENSIONS:
            raise DataError(f"{path}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
                            "name the file .jsonl, .json, .csv or .tsv, or set the format to jsonl, csv or tsv")
        fmt = EXTENSIONS[path.suffix.lower()]
    lines, bad = _decode(path, fmt, cfg.encoding)
    layout: str | None = None
    if fmt == "jsonl":
        records = _json_records(path, lines, bad)
    else:
        layout, records = _table_records(path, lines, bad, fmt, cfg, require_response)
    examples: list[Example] = []
    skipped: list[str] = []
    for line, rec in records:
        try:
            if isinstance(rec, _BadRow):
                raise rec
            if not isinstance(rec, dict):
                raise _BadRow(None, f"not a JSON object (got {_kind(rec)})")
            layout = layout or _layout(cfg, rec)
            examples.append(_example(rec, layout, cfg, require_response, f"{path.name}:{line}"))
        except _BadRow as err:
            message = f"{path}:{line}: {err}"
            if not cfg.skip_bad_rows:
                raise DataError(message) from None
            skipped.append(message)
    if not examples:
        raise DataError(f"{path}: no usable rows" + (f" ({len(skipped)} bad rows skipped)" if skipped else ""))
    return ReadResult(examples=examples, skipped=skipped, layout=layout or "prompt/response")
