"""Seeding and the provenance recorded beside every result (seed, commit, versions)."""

from __future__ import annotations

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


def provenance(seed: int | None = None) -> dict[str, Any]:
    """What every run records next to its results."""
    return {
        "seed": seed,
        "git_commit": git_commit(),
        "versions": library_versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
