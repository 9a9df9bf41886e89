"""Where cached base models live: ``$LORA_DIFFUSION_HOME`` or ``~/.cache/lora-diffusion``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .utils.io import atomic_directory


def default_cache_dir() -> Path:
    return Path(os.environ.get("LORA_DIFFUSION_HOME", Path.home() / ".cache" / "lora-diffusion"))


def check_cache_name(name: str) -> str:
    """A cache entry is one plain directory name under ``bases/``."""
    from .config import ConfigError

    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"--cache {name!r}: must be a plain name such as minilm-wt2 (no path separators)")
    return name


def cached_base(name: str, install_from: str | Path | None = None) -> Path | None:
    """Path of cached base ``name`` (``bases/<name>``), or None. With ``install_from`` the saved
    base directory is first copied there atomically."""
    target = default_cache_dir() / "bases" / name
    if install_from is not None:
        with atomic_directory(target) as tmp:
            shutil.copytree(install_from, tmp, dirs_exist_ok=True)
    return target if (target / "config.json").is_file() else None
