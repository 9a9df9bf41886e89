"""SHA-256 of saved tensor files, recorded in the config file beside them and checked on load.

A saved adapter records ``files_sha256`` (path relative to the adapter directory -> hex
digest) in ``adapter_config.json``; a checkpoint records it in ``state.json``. A file whose
bytes changed after it was saved (a damaged disk, an interrupted copy, a hand edit) is then
refused with one line naming it, instead of loading silently and answering wrongly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

TENSOR_SUFFIXES = (".safetensors", ".bin", ".pt")


class IntegrityError(RuntimeError):
    """A saved file does not match the SHA-256 recorded when it was written."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tensor_files(directory: str | Path) -> list[Path]:
    """Every tensor file under ``directory`` (recursively), sorted."""
    root = Path(directory)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(TENSOR_SUFFIXES))


def hash_files(directory: str | Path, files: list[Path] | None = None) -> dict[str, str]:
    """{path relative to ``directory``: SHA-256} of ``files`` (default: every tensor file)."""
    root = Path(directory)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in (files or tensor_files(root))}


def verify_files(directory: str | Path, recorded: dict[str, str], config_file: str | Path) -> None:
    """Check every recorded file against its digest, and that no tensor file is unrecorded;
    the first problem is one line naming the file (and the config that records it)."""
    root = Path(directory)
    if not isinstance(recorded, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in recorded.items()):
        raise IntegrityError(f"{config_file}: field 'files_sha256' must map file names to SHA-256 digests")
    for name, want in sorted(recorded.items()):
        path = root / name
        if not path.is_file():
            raise IntegrityError(f"{path}: missing (recorded in {config_file})")
        found = sha256_file(path)
        if found != want:
            raise IntegrityError(f"{path}: SHA-256 mismatch, the file changed after it was saved (recorded "
                                 f"{want[:12]}..., found {found[:12]}...); restore it or retrain")
    extra = [p for p in tensor_files(root) if p.relative_to(root).as_posix() not in recorded]
    if extra:
        raise IntegrityError(f"{extra[0]}: a tensor file not recorded in {config_file} (files_sha256)")
