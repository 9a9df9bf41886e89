"""Process memory in MB: current and peak resident set size.

Linux: ``/proc/self/status`` VmRSS and VmHWM. Not ``getrusage``'s ru_maxrss, which a forked
child inherits from its parent across exec (a probe started by a large process would report
the parent's peak). Elsewhere: ru_maxrss, the best that is available.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float | None:
    if not _STATUS.is_file():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return None


def _maxrss_mb() -> float:
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def rss_mb() -> float:
    """Current resident set size."""
    value = _status_mb("VmRSS")
    return _maxrss_mb() if value is None else value


def peak_rss_mb() -> float:
    """Peak resident set size of this process."""
    value = _status_mb("VmHWM")
    return _maxrss_mb() if value is None else value
