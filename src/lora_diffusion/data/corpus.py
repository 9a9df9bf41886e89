"""Text corpora for pretraining: read (file, directory of splits, or HF dataset id), tokenize,
concatenate and cut into fixed-length chunks ``[CLS] w_1 .. w_{L-2} [SEP]``.

A chunk's ``generate_mask`` marks every non-special position: unconditional pretraining
learns to denoise the whole text.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import torch

SPLIT_FILES = {
    "train": ("train.txt", "wiki.train.raw", "train.raw"),
    "validation": ("valid.txt", "validation.txt", "wiki.valid.raw", "valid.raw"),
    "test": ("test.txt", "wiki.test.raw", "test.raw"),
}


class CorpusError(ValueError):
    """A corpus is missing, empty or not readable as UTF-8 text."""


def read_text_file(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (``.gz`` allowed); errors name the path and the line."""
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise CorpusError(f"{path}: not a readable gzip file: {err}") from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise CorpusError(f"{path}: binary data (NUL byte) on line {line}; expected UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise CorpusError(f"{path}: not UTF-8 text (line {line}, byte {err.start}): {err.reason}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise CorpusError(f"corpus file is empty: {path}")
    return lines


def read_csv_column(path: Path, column: str = "text") -> list[str]:
    """One text per CSV row from ``column`` (quoted multi-line cells allowed; each cell's
    whitespace, newlines included, collapsed to single spaces); empty cells are skipped.
    Errors name ``file:line``."""
    import csv
    import io

    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: not UTF-8 text (byte {err.start}): {err.reason}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CorpusError(f"corpus file is empty: {path}") from None
    except csv.Error as err:
        raise CorpusError(f"{path}:{reader.line_num}: unreadable CSV: {err}") from None
    if column not in header:
        raise CorpusError(f"{path}:1: no column {column!r} in the header (columns: {header}); "
                          "choose one with --csv-column")
    index, lines = header.index(column), []
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise CorpusError(f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)}")
            cell = " ".join(row[index].split())
            if cell:
                lines.append(cell)
    except csv.Error as err:
        raise CorpusError(f"{path}:{reader.line_num}: unreadable CSV: {err}") from None
    if not lines:
        raise CorpusError(f"{path}: column {column!r} holds no text")
    return lines


def read_corpus(source: str, split: str = "train", csv_column: str = "text") -> list[str]:
    """Lines of text for ``split`` from a file, a directory of split files (WikiText layout),
    or, when it is neither, an HF ``datasets`` id with a ``text`` column (online only).
    A ``.csv`` file gives one text per row from ``csv_column``. ``split="all"`` takes the
    whole of a single file (otherwise its last 5% are validation and test)."""
    path = Path(source)
    if path.suffix.lower() == ".csv":
        return split_single_file(read_csv_column(path, csv_column), split)
    if path.is_dir():
        if split == "all":
            raise CorpusError(f"{path}: split 'all' takes the whole of a single file; a directory has its own splits "
                              f"({', '.join(SPLIT_FILES)})")
        for name in SPLIT_FILES.get(split, (f"{split}.txt",)):
            if (path / name).is_file():
                return read_text_file(path / name)
        raise CorpusError(
            f"{path}: no file for split {split!r} (looked for {', '.join(SPLIT_FILES.get(split, ()))})"
        )
    if path.exists() or path.suffix in (".txt", ".raw", ".gz", ".text"):
        lines = read_text_file(path)  # a missing local file is reported as such
        return split_single_file(lines, split)
    return _read_hub_dataset(source, split)


def split_single_file(lines: list[str], split: str, holdout: float = 0.05) -> list[str]:
    """One file serves every split: the last ``holdout`` of its lines (at least one) are
    validation and test, the rest train; ``"all"`` is every line."""
    if split == "all":
        return lines
    cut = len(lines) - max(1, int(len(lines) * holdout)) if len(lines) > 1 else len(lines)
    if split == "train":
        return lines[:cut] or lines
    return lines[cut:] or lines


def _read_hub_dataset(name: str, split: str) -> list[str]:
    try:
        import datasets

        parts = name.split(":", 1)  # "wikitext:wikitext-2-raw-v1"
        ds = datasets.load_dataset(parts[0], parts[1] if len(parts) > 1 else None, split=split)
    except Exception as err:
        raise CorpusError(
            f"could not load dataset {name!r} (split {split!r}): {err}\n"
            f"{name!r} is not a local file or directory either. "
            "Offline, pass a local text file or a directory with train.txt / valid.txt / test.txt."
        ) from err
    if "text" not in ds.column_names:
        raise CorpusError(f"dataset {name!r} has no 'text' column (columns: {ds.column_names})")
    lines = [t for t in ds["text"] if t and t.strip()]
    if not lines:
        raise CorpusError(f"dataset {name!r} split {split!r} is empty")
    return lines


@dataclass
class ChunkedCorpus(torch.utils.data.Dataset):
    """Token chunks (N, L) of a corpus; item i is a dict of ids / masks for one chunk."""

    input_ids: torch.Tensor
    generate_mask: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids[i],
            "attention_mask": torch.ones_like(self.input_ids[i]),
            "generate_mask": self.generate_mask[i],
        }

    @property
    def num_tokens(self) -> int:
        return int(self.generate_mask.sum())


def chunk_corpus(lines: list[str], tokenizer, seq_len: int, max_chunks: int = 0) -> ChunkedCorpus:
    """Tokenize ``lines`` without special tokens, concatenate, cut into pieces of
    ``seq_len - 2`` tokens and wrap each as [CLS] piece [SEP]. The tail shorter than a piece is
    dropped. ``max_chunks`` > 0 keeps the first chunks only."""
    body = seq_len - 2
    ids: list[int] = []
    batch = 1000
    need = max_chunks * body if max_chunks else None
    for start in range(0, len(lines), batch):
        enc = tokenizer(lines[start : start + batch], add_special_tokens=False)["input_ids"]
        for row in enc:
            ids.extend(row)
        if need is not None and len(ids) >= need:
            break
    n = len(ids) // body
    if max_chunks:
        n = min(n, max_chunks)
    if n == 0:
        raise CorpusError(f"corpus too short for one chunk of {seq_len} tokens ({len(ids)} tokens)")
    pieces = torch.tensor(ids[: n * body], dtype=torch.long).view(n, body)
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.cat(
        [torch.full((n, 1), cls_id), pieces, torch.full((n, 1), sep_id)], dim=1
    )
    generate = torch.ones_like(input_ids, dtype=torch.bool)
    generate[:, 0] = False
    generate[:, -1] = False
    return ChunkedCorpus(input_ids, generate)


def concat_chunks(parts: list[ChunkedCorpus]) -> ChunkedCorpus:
    """One data set of the chunks of several corpora (each cut on its own, so no chunk spans
    two), in order; the trainer's sampler mixes them in proportion to their chunk counts."""
    return ChunkedCorpus(torch.cat([p.input_ids for p in parts]), torch.cat([p.generate_mask for p in parts]))


def corpus_name(source: str) -> str:
    """A short name of a corpus source for logs and records: its file or directory name, or the
    hub id's last part (``../data/arxiv/abstracts.csv`` -> ``abstracts.csv``)."""
    return Path(source.rstrip("/")).name or source

