"""Atomic writes: a file or directory appears complete or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path`` (an existing
    ``path`` is moved aside first and deleted only after the swap). On failure the
    temporary directory is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_writable_dir(path: str | Path, field: str = "output_dir") -> Path:
    """Refuse, before any work, an output directory that cannot be written: a path under a
    file, an existing file, or a directory (or its nearest existing ancestor, when it does not
    exist yet) where nothing can be created. The check creates a probe there and removes it at
    once; nothing else is created (a refused command leaves no empty directory behind)."""
    from ..config import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{field} {path}: exists and is not a directory")
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{field} {path}: cannot be created: {ancestor} is a file, not a directory")
    try:  # a real write: os.access says yes to root on read-only or virtual file systems
        shutil.rmtree(tempfile.mkdtemp(prefix=".write-test-", dir=ancestor))
    except OSError as err:
        what = "not writable" if ancestor == path.absolute() else f"cannot be created in {ancestor}"
        raise ConfigError(f"{field} {path}: {what} ({err.strerror or err})") from None
    return path


def check_writable_file(path: str | Path, field: str = "output", overwrite: bool = True) -> Path:
    """An output file: its directory must be writable (see ``check_writable_dir``), and an
    existing file is refused unless ``overwrite``; a directory at ``path`` is refused."""
    from ..config import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{field} {path}: is a directory; give a file path")
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"{field} {path}: cannot be written: {path.parent} is a file, not a directory")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{field} {path} exists: pass --overwrite to replace it (nothing was written)")
    check_writable_dir(path.parent, field)
    return path


def read_json(path: str | Path, error: type[Exception] = ValueError, what: str = "") -> Any:
    """Parse a JSON file; a missing, non-UTF-8 or malformed file is one ``error`` naming the
    file (and line). ``what`` prefixes the missing-file message (e.g. the flag given)."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise (FileNotFoundError if error is ValueError else error)(
            f"{what + ' ' if what else ''}{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a JSON file") from None
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror}") from None
