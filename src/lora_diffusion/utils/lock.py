"""An advisory lock that is never waited for: several workers share one study directory.

``flock`` locks belong to the open file, so the kernel releases them when the holder exits,
however it exits: a crashed worker leaves no stale lock behind (a pid file would). Linux and
macOS; on a network file system without ``flock`` support the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def try_lock(path: str | Path) -> Iterator[bool]:
    """Yield True when this process now holds the exclusive lock on ``path`` (created if
    missing), False when another process holds it. The file is removed when the holder
    releases it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # no flock on this file system: behave as before locks existed
            yield True
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)
