"""Timing and counting helpers shared by the benchmark suite.

Times are wall seconds of one call per measurement (``time.perf_counter``, CUDA synchronised),
interleaved across the compared configurations over several rounds so machine drift hits each
alike, after one warm-up call each; the reported figure is the median over rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch


def time_once(fn: Callable[[], object]) -> float:
    """Seconds of one call of ``fn``. Not ``torch.utils.benchmark.Timer.timeit(1)``, which runs
    the statement twice more as its own warm-up before every measurement: for calls of seconds,
    already warmed up by the rounds, that tripled the bench's time for nothing."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, dict]:
    """Median and spread of each ``fn`` over ``rounds``, run round-robin after ``warmup`` calls."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(time_once(fn))
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs": len(t)}
            for name, t in times.items()}


@contextmanager
def count_trunk_rows(backbone):
    """Count trunk forward passes and the rows they processed (a forward hook on the trunk).
    Yields a dict {"calls": n, "rows": r}."""
    counts = {"calls": 0, "rows": 0}

    def hook(module, args, kwargs, output):
        x = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        if x is None and args:
            x = args[0]
        counts["calls"] += 1
        counts["rows"] += int(x.shape[0])

    handle = backbone.trunk.register_forward_hook(hook, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
