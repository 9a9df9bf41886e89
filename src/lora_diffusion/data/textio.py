"""Text files of the task readers, decoded so that every problem names the file and the line:
bytes that are not UTF-8 (``file:line: not valid UTF-8 (byte 0xe9 at column 12)``), binary data
(a NUL byte), and malformed delimited records."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path

from .examples import DataError


def read_text_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, line ends kept (a BOM is dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}" if not path.exists() else f"{path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read data file {path}: {err.strerror}") from None
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataError(f"{path}:{line}: binary data (NUL byte); expected a UTF-8 text file")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines = []
    for number, raw in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            column = len(raw[: err.start].decode("utf-8", errors="replace")) + 1
            raise DataError(f"{path}:{number}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {column}); "
                            "save the file as UTF-8") from None
    return lines


def read_text(path: str | Path) -> str:
    return "".join(read_text_lines(path))


def delimited_rows(path: Path, delimiter: str, quoting: int = csv.QUOTE_NONE) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, cells) of a delimited UTF-8 file; blank lines are skipped."""
    reader = csv.reader(iter(read_text_lines(path)), delimiter=delimiter, quoting=quoting, strict=True)
    done = 0
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(f"{path}:{done + 1}: malformed record: {err}") from None
        start, done = done + 1, reader.line_num
        if rec and any(c.strip() for c in rec):
            yield start, rec
