"""Where a long study stands: every cell it will train and the state of each, read from disk.

``lora-diffusion study --config X --status`` lists, without training or locking anything, each
(phase, task, method, seed) of the study in run order (the learning-rate search runs of a method
with ``lr_grid`` just before its first seed, the points of a grid one after another) and its state:

- ``done``: ``result.json`` is written;
- ``failed``: the run diverged (``failed.json``) and the study will not retry it;
- ``running``: a worker holds the cell's lock (its lock file names a live process);
- ``partial``: interrupted, it resumes from its newest checkpoint;
- ``pending``: not started (or started without a checkpoint: it starts over).

The lock is read, never taken: a status check beside the workers cannot make one of them skip a
cell. The step shown is the last one the run logged, against its step cap (early stopping may end
it sooner). The work left is estimated from the finished runs (``remaining``): a rough figure for
planning, which early stopping and the machine's other load move.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .study_lr import FAILED_FILE, SEARCH_DIR, search_study
from .training.checkpoint import list_checkpoints

STATES = ("done", "running", "partial", "failed", "pending")


@dataclass
class Cell:
    phase: str  # "study", "lr=<v>" (a rate-search run), or a grid point's slug
    task: str
    method: str
    seed: int
    run_dir: Path
    max_steps: int
    state: str = "pending"
    step: int | None = None
    copy: bool = False  # a first seed that becomes a copy of the chosen search run (no training of its own)
    budget: str = "study"  # "search" where the task's search runs have a budget of their own
    seconds: float | None = None  # a finished run's wall time (``summary.wall_time_s``)


def _holder_alive(lock: Path) -> bool:
    """The lock file exists and names a live process (a crashed holder's file may remain)."""
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _last_step(run_dir: Path) -> int | None:
    try:
        history = json.loads((run_dir / "training_history.json").read_text())
    except (OSError, ValueError):
        return None
    steps = [int(h["step"]) for h in history if isinstance(h, dict) and "step" in h]
    return max(steps) if steps else None


def cell_state(run_dir: Path) -> tuple[str, int | None]:
    """(state, last logged step) of one run directory (states in the module docstring)."""
    if (run_dir / "result.json").is_file():
        return "done", _last_step(run_dir)
    if _holder_alive(run_dir.parent / f".{run_dir.name}.lock"):
        return "running", _last_step(run_dir)
    if (run_dir / FAILED_FILE).is_file():
        return "failed", _last_step(run_dir)
    if list_checkpoints(run_dir / "checkpoints"):
        return "partial", _last_step(run_dir)
    return "pending", None


def search_rates(cfg, task: str, method: str, seed: int) -> list[float]:
    """The grid's rates, then those tried past its edge (``lr_grid_extend``): from the search
    record where it is written, and from the search runs on disk."""
    rates = [float(r) for r in cfg.lr_grid[method]]
    record = Path(cfg.output_dir) / SEARCH_DIR / task / f"{method}.json"
    extra: list[float] = []
    try:
        extra += [float(r) for r in json.loads(record.read_text()).get("grid") or []]
    except (OSError, ValueError, TypeError):
        pass
    for run in sorted((Path(cfg.output_dir) / SEARCH_DIR).glob(f"lr=*/{task}/{method}/seed-{seed}")):
        try:
            extra.append(float(run.parts[-4].split("=", 1)[1]))
        except ValueError:
            continue
    for r in extra:
        if all(f"{r:g}" != f"{x:g}" for x in rates):
            rates.append(r)
    return rates


def study_cells(cfg) -> list[Cell]:
    """Every cell of ``cfg`` (a ``StudyConfig``) in run order, with its state."""
    from .study import grid_points, point_study

    if cfg.grid:
        out = []
        for point in grid_points(cfg):
            for cell in study_cells(point_study(cfg, point)):
                cell.phase = point.slug if cell.phase == "study" else f"{point.slug} {cell.phase}"
                out.append(cell)
        return out
    cells = []
    for task, method, seed in cfg.plan():  # a gridded method's search runs just before its first seed
        if method in cfg.lr_grid and seed == cfg.seeds_of(task)[0]:
            for lr in search_rates(cfg, task, method, seed):
                search = search_study(cfg, lr, task)
                cells.append(Cell(f"lr={lr:g}", task, method, seed, search.run_dir(method, seed, task),
                                  search.run_config(method, seed, task).train.max_steps))
        copy = method in cfg.lr_grid and seed == cfg.seeds_of(task)[0] and not cfg.lr_search_overrides.get(task)
        cells.append(Cell("study", task, method, seed, cfg.run_dir(method, seed, task),
                          cfg.run_config(method, seed, task).train.max_steps, copy=copy))
    for cell in cells:
        if "lr=" in cell.phase and cfg.lr_search_overrides.get(cell.task):
            cell.budget = "search"
        cell.state, cell.step = cell_state(cell.run_dir)
        if cell.state == "done" and not cell.copy:
            try:
                summary = json.loads((cell.run_dir / "result.json").read_text()).get("summary") or {}
                cell.seconds = float(summary["wall_time_s"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
    return cells


def remaining(cells: list[Cell]) -> tuple[float, int, int]:
    """(seconds, cells counted, cells not counted) of the work left, for one worker: each cell not
    done, failed or a copy costs the mean wall time of the finished runs of its task, method and
    budget, less the share of their mean steps it has already logged; cells of a kind with no
    finished run yet are not counted."""
    done: dict[tuple[str, str, str], list[tuple[float, int]]] = {}
    for c in cells:
        if c.seconds is not None:
            done.setdefault((c.task, c.method, c.budget), []).append((c.seconds, c.step or 0))
    seconds, counted, unknown = 0.0, 0, 0
    for c in cells:
        if c.state in ("done", "failed") or c.copy:
            continue
        runs = done.get((c.task, c.method, c.budget))
        if not runs:
            unknown += 1
            continue
        mean_s = sum(r[0] for r in runs) / len(runs)
        mean_steps = sum(r[1] for r in runs) / len(runs)
        left = 1.0 - min((c.step or 0) / mean_steps, 1.0) if mean_steps else 1.0
        seconds += mean_s * left
        counted += 1
    return seconds, counted, unknown


def status_lines(cells: list[Cell]) -> list[str]:
    """A count of cells per (task, phase kind) and state, the running and partial cells, and an
    estimate of the work left (``remaining``)."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for c in cells:
        kind = "lr search" if "lr=" in c.phase else c.phase
        counts = groups.setdefault((c.task, kind), dict.fromkeys(STATES, 0))
        counts[c.state] += 1
    tw = max([4, *(len(t) for t, _ in groups)])
    pw = max([5, *(len(k) for _, k in groups)])
    lines = [f"{'task':<{tw}}  {'phase':<{pw}} {'cells':>5} " + " ".join(f"{s:>7}" for s in STATES)]
    for (task, kind), counts in groups.items():
        lines.append(f"{task:<{tw}}  {kind:<{pw}} {sum(counts.values()):>5} "
                     + " ".join(f"{counts[s]:>7}" for s in STATES))
    total = {s: sum(c.state == s for c in cells) for s in STATES}
    lines.append(f"{'all':<{tw}}  {'':<{pw}} {len(cells):>5} " + " ".join(f"{total[s]:>7}" for s in STATES))
    for c in cells:
        if c.state in ("running", "partial"):
            at = "not logged yet" if c.step is None else f"step {c.step} of at most {c.max_steps}"
            lines.append(f"{c.state}: {c.task} {c.method} seed {c.seed} ({c.phase}), {at}: {c.run_dir}")
    seconds, counted, unknown = remaining(cells)
    lines.append(f"left: about {seconds / 3600:.1f} hours of one worker for {counted} cells (the mean wall time of "
                 f"the finished runs of the same task, method and budget); {unknown} cells of a kind not run yet "
                 "are not counted")
    return lines
