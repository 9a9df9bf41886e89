"""Where base models live: the cache (``$LORA_DIFFUSION_HOME`` or ``~/.cache/lora-diffusion``) and
the bases committed to a checkout (``<repository>/bases/<name>``).

A committed base carries ``provenance.json`` with the digest of its weight files
(``utils.repro.base_digest``); it is verified before it is installed in the cache, so a base that
differs from the one the committed results were made on is never used under its name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from .utils.io import atomic_directory

log = logging.getLogger(__name__)

COMMITTED_BASES = Path(__file__).resolve().parents[2] / "bases"  # a checkout's; absent from a wheel
PROVENANCE_FILE = "provenance.json"


def default_cache_dir() -> Path:
    return Path(os.environ.get("LORA_DIFFUSION_HOME", Path.home() / ".cache" / "lora-diffusion"))


def is_cache_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and not name.startswith(".")


def check_cache_name(name: str) -> str:
    """A cache entry is one plain directory name under ``bases/``."""
    from .config import ConfigError

    if not is_cache_name(name):
        raise ConfigError(f"--cache {name!r}: must be a plain name such as minilm-wt2 (no path separators)")
    return name


class BaseIntegrityError(ValueError):
    """A committed base whose weight files do not hash to the digest it records."""


def committed_base(name: str, root: str | Path | None = None) -> Path | None:
    """``<root>/<name>`` (``root`` defaults to the checkout's ``bases/``) after checking that its
    weight files hash to the ``base_digest`` its ``provenance.json`` records; None where there is
    no such base. A mismatch raises BaseIntegrityError naming both digests."""
    from .utils.repro import base_digest

    d = Path(root if root is not None else COMMITTED_BASES) / name
    if not (d / "config.json").is_file() or not (d / PROVENANCE_FILE).is_file():
        return None
    recorded = json.loads((d / PROVENANCE_FILE).read_text()).get("base_digest")
    actual = base_digest(d)
    if recorded != actual:
        raise BaseIntegrityError(f"{d}: weight files hash to {actual}, {PROVENANCE_FILE} records {recorded} "
                                 "(a partial checkout or an edited file; restore it with git)")
    return d


def cached_base(name: str, install_from: str | Path | None = None,
                committed_root: str | Path | None = None) -> Path | None:
    """Path of cached base ``name`` (``bases/<name>``), or None. With ``install_from`` the saved
    base directory is first copied there atomically; without it, a base missing from the cache is
    installed from the checkout's committed ``bases/<name>`` where one exists (verified first)."""
    target = default_cache_dir() / "bases" / name
    if install_from is None and not (target / "config.json").is_file():
        install_from = committed_base(name, committed_root)
        if install_from is not None:
            log.info("installing the committed base %s into the cache at %s", install_from, target)
    if install_from is not None:
        with atomic_directory(target) as tmp:
            shutil.copytree(install_from, tmp, dirs_exist_ok=True)
    return target if (target / "config.json").is_file() else None
