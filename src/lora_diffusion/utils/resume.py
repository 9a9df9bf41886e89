"""Finished pieces of a long measurement kept on disk, so that an interrupted run resumes where it
stopped instead of starting again (a decoding study over XSum takes hours on one CPU thread, longer
than a session).

The file holds a ``key`` (everything the pieces depend on: inputs, settings, seeds, the adapter's
file hashes) and the pieces by section and name. A file written under another key is not read (the
measurement starts again and overwrites it); every write is atomic, so a crash leaves the previous
state whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .io import atomic_write_json


class ResumeFile:
    """``get(section, name)`` / ``put(section, name, value)`` over ``path``, valid for ``key``."""

    def __init__(self, path: str | Path, key: dict[str, Any]):
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=str))  # as it reads back from disk
        self.data: dict[str, dict[str, Any]] = {}
        self.resumed = False
        if self.path.is_file():
            try:
                saved = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = {}
            if isinstance(saved, dict) and saved.get("key") == self.key and isinstance(saved.get("data"), dict):
                self.data, self.resumed = saved["data"], True

    def get(self, section: str, name: str, default: Any = None) -> Any:
        return self.data.get(section, {}).get(name, default)

    def put(self, section: str, name: str, value: Any) -> None:
        self.data.setdefault(section, {})[name] = value
        atomic_write_json(self.path, {"key": self.key, "data": self.data})

    def remove(self) -> None:
        """Drop the file once the measurement's result is written."""
        self.path.unlink(missing_ok=True)
