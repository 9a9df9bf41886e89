"""Seeding and the provenance recorded beside every result (seed, commit, versions)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRACKED_PACKAGES = (
    "torch", "transformers", "accelerate", "peft", "safetensors", "datasets",
    "numpy", "scipy", "sacrebleu", "rouge-score", "pycocoevalcap", "lora-diffusion",
)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (dropout and any global-RNG draw)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit of the repository holding this package (or ``start``), if any."""
    cwd = Path(start) if start else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


WEIGHT_FILES = ("*.safetensors", "*.bin", "config.json", "diffusion_config.json")


@functools.lru_cache(maxsize=32)
def _digest(files: tuple[tuple[str, int, int], ...], root: str) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        digest.update(name.encode() + b"\0")
        with open(Path(root) / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def base_digest(directory: str | Path) -> str | None:
    """SHA-256 over the names and bytes of a local model directory's weight and config files
    (``WEIGHT_FILES``, sorted by name): which base weights a run used, where a base's path alone
    does not tell (a cache rebuilt on a new machine). None for what is not a local directory (a
    hub id). Cached per process by the files' sizes and modification times."""
    root = Path(directory)
    if not root.is_dir():
        return None
    found = sorted({p for pattern in WEIGHT_FILES for p in root.glob(pattern) if p.is_file()})
    if not found:
        return None
    return _digest(tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in found), str(root))


def base_record(base: str | None) -> dict[str, Any]:
    """``{"path", "sha256"}`` of a base given by name or path (the MiniLM alias resolved)."""
    from ..hub import resolve_source  # imported here: modules that hub imports import this one

    if not base:
        return {"path": None, "sha256": None}
    return {"path": str(base), "sha256": base_digest(resolve_source(str(base)))}


def provenance(seed: int | None = None, base: str | None = None) -> dict[str, Any]:
    """What every run records next to its results; with ``base``, the digest of its weights."""
    return {
        "seed": seed,
        **({"base_weights": base_record(base)} if base else {}),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
