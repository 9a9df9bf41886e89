"""Learning curves on validation and the equal-wall-clock view of a study (issue #13).

Every run logs ``eval/primary`` (its validation rows, carved from train) at each evaluation in
``training_history.json``. The equal-wall-clock budget W of a task is the training time of the
paper's trajectory configuration (``TRAJECTORY``): steps x median train s/step, mean over seeds.
Another method is read at its last evaluation whose step x its own median s/step fits in W.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .report_tasks import _methods, fmt_value, mean_or_none, mean_step_seconds, step_time

TRAJECTORY = "trajectory"  # the paper's configuration: its wall time is the equal-wall-clock budget


def history(study_dir: str | Path, task: str, method: str, seed: int) -> list[tuple[int, float]]:
    """(step, validation primary) of every evaluation in the run's ``training_history.json``."""
    path = Path(study_dir) / task / method / f"seed-{seed}" / "training_history.json"
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [(int(h["step"]), float(h["eval/primary"])) for h in entries if h.get("eval/primary") is not None]


def wall_budget(data, task: str) -> float | None:
    """W: the paper's trajectory method's training time on the task, mean over seeds of steps
    trained x median step time (evaluations and pauses of the process left out, as for every
    method placed within W)."""
    def training_time(summary: dict[str, Any]) -> float | None:
        seconds = step_time(summary)
        return (summary.get("steps") or 0) * seconds if seconds else None

    return mean_or_none(training_time(r.get("summary") or {}) for r in data[task].get(TRAJECTORY, {}).values())


def at_budget(curve: list[tuple[int, float]], seconds_per_step: float | None,
              budget: float) -> tuple[int, float] | None:
    """The last evaluation whose step x seconds-per-step fits in ``budget`` (None if none)."""
    if not seconds_per_step:
        return None
    fits = [(s, v) for s, v in curve if s * seconds_per_step <= budget]
    return max(fits) if fits else None


def wall_clock_table(study_dir: str | Path, data) -> list[str]:
    """Per task and method: the validation primary metric at the last evaluation whose step x
    the run's median train s/step is within W (``wall_budget``),
    mean over seeds (the step reached is the mean of those seeds'), beside the validation value
    of its own selected step (its own, early-stopped budget). ``-``: no evaluation fits in W."""
    lines = ["| task | W (s) | method | train s/step | step reached in W | validation primary at W | "
             "validation primary, own budget |", "|---|---:|---|---:|---:|---:|---:|"]
    for t in sorted(data):
        budget = wall_budget(data, t)
        if budget is None:
            lines.append(f"| {t} | - | (no {TRAJECTORY} run yet) | - | - | - | - |")
            continue
        for m in _methods({t: data[t]}):
            runs = data[t][m]
            hits = [at_budget(history(study_dir, t, m, seed), step_time(r.get("summary") or {}),
                              budget) for seed, r in runs.items()]
            hits = [h for h in hits if h is not None]
            own = mean_or_none(((r.get("summary") or {}).get("selection") or {}).get("selected_value") for r in runs.values())
            lines.append(f"| {t} | {budget:.0f} | {m} | {fmt_value(mean_step_seconds(runs), '.3f')} | "
                         f"{fmt_value(mean_or_none(s for s, _ in hits), '.0f')} | {fmt_value(mean_or_none(v for _, v in hits))} | "
                         f"{fmt_value(own)} |")
    return lines


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(study_dir: str | Path, data, task: str, out: Path) -> Path | None:
    """Validation primary vs step (left) and vs training seconds (step x the run's mean train
    s/step, right, with W dashed), one line per method (seed 42, or its first seed)."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    drawn = False
    for m in _methods({task: data[task]}):
        runs = data[task][m]
        seed = 42 if 42 in runs else min(runs)
        curve = history(study_dir, task, m, seed)
        if not curve:
            continue
        drawn = True
        steps, values = [s for s, _ in curve], [v for _, v in curve]
        (line,) = left.plot(steps, values, marker=".", label=f"{m} (seed {seed})")
        tps = step_time(runs[seed].get("summary") or {})
        if tps:
            right.plot([s * tps for s in steps], values, marker=".", color=line.get_color())
    budget = wall_budget(data, task)
    if budget is not None:
        right.axvline(budget, color="grey", linestyle="--", linewidth=1, label=f"W = {budget:.0f} s")
        right.legend(fontsize=7)
    if not drawn:
        plt.close(fig)
        return None
    left.set_xlabel("step")
    right.set_xlabel("training seconds (step x median train s/step)")
    for ax in (left, right):
        ax.set_ylabel("validation primary metric (%)")
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle(f"{task}: learning curves on validation")
    fig.tight_layout()
    path = out / f"curves_{re.sub(r'[^A-Za-z0-9_.-]', '_', task)}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
