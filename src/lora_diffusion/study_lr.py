"""Learning rates chosen on validation, for every method alike (``StudyConfig.lr_grid``).

For each task and each method with a grid of learning rates, the study first trains the
task's first seed at every rate of the grid, in ``<output>/lr-search/lr=<v>/...`` (the same
layout as the study below it), and reads each run's validation score: the task's primary
metric on the validation rows carved from train (never the reported split). The best rate
(the first of the grid on a tie) is recorded in ``<output>/lr-search/<task>/<method>.json``;
its run is copied to the study's own place for that seed, and every other seed trains at it.
With ``lr_grid_extend`` > 0, a best rate at the grid's lowest or highest end is not taken on
trust: the next rate beyond it (one geometric step of the grid's outer pair) trains too, and so on
while the best stays at the edge, at most that many times (the record lists the rates added).

``lr_search_overrides`` (task -> dotted fields) gives a task's search runs settings of their own,
typically a shorter budget where full budgets are long (documented in the record). The search
run is then not the study's run: the first seed trains again, at the chosen rate, with the
study's own settings.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from .utils.io import atomic_write_json

log = logging.getLogger(__name__)
SEARCH_DIR = "lr-search"
FAILED_FILE = "failed.json"  # a diverged run's record (study.run_cell)


def validation_score(result_file: Path) -> float:
    """The primary validation metric recorded in a run's ``result.json``."""
    result = json.loads(result_file.read_text())
    val = result.get("validation")
    if not val:
        raise ValueError(f"{result_file}: no validation score (a learning-rate search needs validation_rows > 0)")
    scored = val["generation"]
    return float(scored["metrics"][scored["primary"]])


def search_study(cfg, lr: float, task: str):
    """The study whose runs train ``lr`` (every method's rate set to it) under ``lr-search``,
    with the task's ``lr_search_overrides`` on top of its own settings."""
    over = dict(cfg.task_overrides)
    if cfg.lr_search_overrides.get(task):
        over[task] = {**(over.get(task) or {}), **cfg.lr_search_overrides[task]}
    return replace(cfg, lr_grid={}, lr_search_overrides={}, task_overrides=over,
                   method_lr={m: lr for m in cfg.methods},
                   output_dir=str(Path(cfg.output_dir) / SEARCH_DIR / f"lr={lr:g}"))


def beyond_edge(rates: list[float], chosen: float) -> float | None:
    """The next rate past the grid's edge when ``chosen`` is its lowest or highest rate, one
    geometric step of the grid's outermost pair further (``[2e-5, 5e-5, 1e-4]``, chosen 1e-4:
    2e-4; chosen 2e-5: 8e-6), rounded to three significant digits; None inside the grid or past 1."""
    ordered = sorted(rates)
    if len(ordered) < 2 or chosen not in (ordered[0], ordered[-1]):
        return None
    low = chosen == ordered[0]
    step = ordered[0] / ordered[1] if low else ordered[-1] / ordered[-2]
    nxt = float(f"{chosen * step:.3g}")
    return nxt if 0 < nxt <= 1 and nxt not in ordered else None


def choose_lr(cfg, task: str, method: str, progress: bool, run_cell) -> float | None:
    """Train the first seed at every rate of the method's grid; while the best is at the grid's
    edge, one rate further (``beyond_edge``), at most ``cfg.lr_grid_extend`` times; record and
    return the best (None if every run diverged, or if a search run is still training in another
    worker: nothing is chosen or recorded then, a later pass chooses)."""
    seed = cfg.seeds_of(task)[0]
    scores: dict[str, Any] = {}
    rates = [float(r) for r in cfg.lr_grid[method]]
    chosen = None
    while True:
        busy = []
        for lr in rates:
            if f"{lr:g}" in scores:
                continue
            search = search_study(cfg, lr, task)
            result = run_cell(search, task, method, seed, progress)
            scores[f"{lr:g}"] = validation_score(result) if result is not None else None
            if result is None and not (search.run_dir(method, seed, task) / FAILED_FILE).is_file():
                busy.append(lr)
        if busy:
            log.info("study: %s %s: search runs at %s train in another worker; the rate is chosen later",
                     task, method, busy)
            return None
        finite = {k: v for k, v in scores.items() if v is not None}
        chosen = float(max(finite, key=lambda k: finite[k])) if finite else None
        nxt = beyond_edge(rates, chosen) if chosen is not None else None
        if nxt is None or len(rates) - len(cfg.lr_grid[method]) >= cfg.lr_grid_extend:
            break
        rates.append(nxt)
    record = Path(cfg.output_dir) / SEARCH_DIR / task / f"{method}.json"
    atomic_write_json(record, {"task": task, "method": method, "seed": seed, "grid": rates,
                               "extended": rates[len(cfg.lr_grid[method]):],
                               "validation_primary": scores, "chosen_lr": chosen,
                               "search_overrides": cfg.lr_search_overrides.get(task) or {},
                               "rule": "highest validation score of the task's first seed; ties: first in grid; "
                                       f"at the grid's edge, one rate further, at most {cfg.lr_grid_extend} times"})
    if chosen is not None and not cfg.lr_search_overrides.get(task):
        source = Path(search_study(cfg, chosen, task).run_dir(method, seed, task))
        target = Path(cfg.run_dir(method, seed, task))
        if not (target / "result.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "best"))
            atomic_write_json(target / "selected_from.json", {"lr_search_run": str(source), "chosen_lr": chosen})
    log.info("study: %s %s: learning rate %s chosen on validation (%s)", task, method, chosen, scores)
    return chosen


def run_with_lr_search(cfg, progress: bool, run_cell) -> list[Path]:
    """The study with each gridded method's rate chosen per task on its first seed, then the
    other seeds at the chosen rate; methods without a grid run as usual. A choice that could not
    be made yet (a search run training in another worker) is tried again at the method's next
    seed, so that a task's later seeds are not left for another pass."""
    results: list[Path] = []
    chosen: dict[tuple[str, str], float | None] = {}
    for task, method, seed in cfg.plan():  # a task's first seed comes first in either order
        if method in cfg.lr_grid:
            if chosen.get((task, method)) is None:  # not chosen yet, or busy elsewhere before
                chosen[task, method] = choose_lr(cfg, task, method, progress, run_cell)
            lr = chosen[task, method]
            if lr is None:
                continue  # still training elsewhere, or every rate diverged (the search's failed.json files)
            sub = replace(cfg, lr_grid={}, lr_search_overrides={}, method_lr={**cfg.method_lr, method: lr})
            result = sub.run_dir(method, seed, task) / "result.json"
            if seed == cfg.seeds_of(task)[0] and not cfg.lr_search_overrides.get(task):
                results.append(result)  # the search run at the chosen rate, copied
                continue
            out = run_cell(sub, task, method, seed, progress)
        else:
            out = run_cell(cfg, task, method, seed, progress)
        if out is not None:
            results.append(out)
    return results
