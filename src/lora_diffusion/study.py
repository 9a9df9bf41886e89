"""``lora-diffusion study``: methods x seeds on one task or on many, idempotent and resumable.

A method entry ``<method>@<label>`` is a variant of a registered method (e.g.
``trajectory@deep`` with ``method_options: {"trajectory@deep": {"preset": "deep"}}``): it has
its own directory, options, learning rate (``method_lr``, ``lr_grid``) and row in the reports.

One task: each run lives in ``<output_dir>/<method>/seed-<n>/`` with its ``result.json``.
Many tasks (``tasks``): ``<output_dir>/<task>/<method>/seed-<n>/``, each task with its own
seeds (``task_seeds``) and settings (``task_overrides``: dotted fields of the run's
``FinetuneConfig``, e.g. ``{"xsum": {"train.micro_batch_size": 8}}``), the same for every
method. Runs go seed by seed (every task and method at the first seed, then the next), so an
interrupted study already has one seed per cell. A finished run (result present) is
skipped, an interrupted one resumes from its newest checkpoint. Every method gets the same
step budget, batch, data order (per seed) and evaluation. Several workers (one per GPU, or
one per core) may run one study into one directory: the worker training a cell holds its
lock (``.seed-<n>.lock`` beside the run, released even if the worker crashes) and the
others skip that cell.

A grid (``grid``: dotted ``FinetuneConfig`` field -> values, e.g.
``{"method_options.lambda_rank": [0, 0.01]}``; several fields give their cartesian product)
runs the whole study once per grid point, in ``<output_dir>/<point-slug>/<method>/seed-<n>/``
(``run_grid``), seed by seed across the points; the study's own settings are the default
point, added (slug ``default``) when no grid point equals them. ``grid.json`` at the top
records the points; ``report_grid`` puts each point beside the default.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import TrainConfig, load_config, require, to_dict
from .data.examples import task_names
from .finetune import FinetuneConfig, run_finetune
from .methods import method_config, registered_methods
from .runs import check_same_base, flatten
from .study_lr import FAILED_FILE, run_with_lr_search
from .training.checkpoint import list_checkpoints
from .training.trainer import TrainingDiverged
from .utils.io import atomic_write_json, check_writable_dir
from .utils.lock import try_lock
from .utils.repro import provenance

log = logging.getLogger(__name__)


def base_method(name: str) -> str:
    """The registered method of a study's method entry: ``trajectory@deep`` -> ``trajectory``
    (a labelled variant: its own directory, options, learning rate and rows in the report)."""
    return name.split("@", 1)[0]


@dataclass
class StudyConfig:
    base: str = "minilm"
    task: str = "sst2"
    tasks: list[str] = field(default_factory=list)  # many tasks: overrides ``task``
    task_seeds: dict[str, Any] = field(default_factory=dict)  # task -> its seeds (else ``seeds``)
    task_overrides: dict[str, Any] = field(default_factory=dict)  # task -> {dotted FinetuneConfig field: value}
    data_dir: str = ""  # one task: its folder ("" = data_root/<the task's folder>)
    data_root: str = "../shared/data"
    eval_split: str = ""
    methods: list[str] = field(default_factory=lambda: ["full", "trajectory", "lora", "adapter", "bitfit", "prefix"])
    seeds: list[int] = field(default_factory=lambda: list(range(42, 52)))
    method_options: dict[str, Any] = field(default_factory=dict)  # method -> options
    method_lr: dict[str, Any] = field(default_factory=dict)  # method -> learning rate (else train.lr)
    lr_grid: dict[str, Any] = field(default_factory=dict)  # method -> rates chosen from on validation (study_lr)
    lr_search_overrides: dict[str, Any] = field(default_factory=dict)  # task -> dotted fields of its search runs
    lr_grid_extend: int = 0  # rates tried past the grid's edge while the best sits at it (study_lr.beyond_edge)
    max_train_rows: int = 0
    validation_rows: int = 500
    eval_rows: int = 0
    classification_head: bool = True
    head_loss_weight: float = 1.0
    output_dir: str = "runs/study"
    retry_failed: bool = False  # run again the runs that diverged before (failed.json)
    keep_checkpoints: bool = False  # a finished run's checkpoints are deleted (its adapter and result stay)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=1000, lr=1e-4, warmup_steps=500, batch_size=64, micro_batch_size=16, save_every=100))
    grid: dict[str, Any] = field(default_factory=dict)  # dotted FinetuneConfig field -> values (run_grid)
    run_overrides: dict[str, Any] = field(default_factory=dict)  # dotted FinetuneConfig fields of every run
    # run order: "seed" (every task and method at a seed before the next seed: paired seeds across
    # tasks early) or "task" (every seed of a task before the next task: whole tasks early)
    order: str = "seed"

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if base_method(m) not in registered_methods()]
        require(not unknown, "methods", f"unknown {unknown}; registered: {registered_methods()} "
                "(a variant is <method>@<label>, its options in method_options['<method>@<label>'])")
        require(len(set(self.methods)) == len(self.methods), "methods", f"a method repeats: {self.methods}")
        require(len(self.seeds) >= 1, "seeds", "need at least one seed")
        require(self.order in ("seed", "task"), "order", f"must be seed or task, got {self.order!r}")
        require(all(s >= 0 for s in self.seeds), "seeds", f"must be >= 0, got {self.seeds}")
        for m, lr in self.method_lr.items():
            try:
                ok = 0 < float(lr) <= 1
            except (TypeError, ValueError):
                ok = False
            require(ok, f"method_lr.{m}", f"must be a learning rate > 0 and <= 1, got {lr!r}")
        for m, rates in self.lr_grid.items():
            ok = isinstance(rates, list) and rates and all(isinstance(r, (int, float)) and 0 < r <= 1 for r in rates)
            require(ok, f"lr_grid.{m}", f"must be a non-empty list of learning rates > 0 and <= 1, got {rates!r}")
        require(self.lr_grid_extend >= 0, "lr_grid_extend", f"must be >= 0, got {self.lr_grid_extend}")
        require(not self.lr_grid or self.validation_rows > 0, "lr_grid",
                "choosing learning rates on validation needs validation_rows > 0")
        for m in list(self.method_options) + list(self.method_lr) + list(self.lr_grid):
            require(m in self.methods, "method_options", f"{m!r} is not one of the study's methods {self.methods}")
        known = task_names()
        for t in [*self.tasks, *self.task_seeds, *self.task_overrides, *self.lr_search_overrides]:
            require(t in known, "tasks", f"unknown task {t!r}; known tasks: {known}")
        for t in list(self.task_seeds) + list(self.task_overrides) + list(self.lr_search_overrides):
            require(t in self.task_list(), "task_seeds", f"{t!r} is not one of the study's tasks {self.task_list()}")
        for t, seeds in self.task_seeds.items():
            require(isinstance(seeds, list) and seeds and all(isinstance(x, int) and x >= 0 for x in seeds),
                    f"task_seeds.{t}", f"must be a non-empty list of seeds >= 0, got {seeds!r}")
        for t, over in self.task_overrides.items():
            require(isinstance(over, dict), f"task_overrides.{t}", f"must be a mapping, got {over!r}")
            self.run_config(self.methods[0], self.seeds_of(t)[0], t)  # a bad override fails at load
        for t, over in self.lr_search_overrides.items():
            require(isinstance(over, dict), f"lr_search_overrides.{t}", f"must be a mapping, got {over!r}")
            require(bool(self.lr_grid), "lr_search_overrides", "only applies to a study with an lr_grid")
            load_config(FinetuneConfig, None, {**flatten(to_dict(self.run_config(self.methods[0], self.seeds_of(t)[0], t))),
                                               **over})  # a bad override fails at load
        for key, values in self.grid.items():
            require(isinstance(values, list) and values, f"grid.{key}", f"must be a non-empty list, got {values!r}")
            require(key != "output_dir" and not key.startswith("train.seed"), f"grid.{key}",
                    "not a field a grid may vary")
        if self.run_overrides:
            for m in self.methods:  # a bad grid value fails at load, naming the field
                self.run_config(m, self.seeds_of(self.task_list()[0])[0], self.task_list()[0])

    @property
    def multi(self) -> bool:
        return bool(self.tasks)

    def task_list(self) -> list[str]:
        return list(self.tasks) or [self.task]

    def seeds_of(self, task: str) -> list[int]:
        return [int(s) for s in self.task_seeds.get(task, self.seeds)]

    def run_config(self, method: str, seed: int, task: str | None = None) -> FinetuneConfig:
        task = task or self.task_list()[0]
        train = replace(self.train, seed=seed, lr=float(self.method_lr.get(method, self.train.lr)))
        base = FinetuneConfig(
            base=self.base, method=base_method(method), method_options=dict(self.method_options.get(method, {})),
            task=task, data_dir="" if self.multi else self.data_dir, data_root=self.data_root,
            eval_split=self.eval_split, max_train_rows=self.max_train_rows, validation_rows=self.validation_rows,
            eval_rows=self.eval_rows, classification_head=self.classification_head,
            head_loss_weight=self.head_loss_weight, output_dir=str(self.run_dir(method, seed, task)), train=train)
        over = {**self.run_overrides, **(self.task_overrides.get(task) or {})}
        return load_config(FinetuneConfig, None, {**flatten(to_dict(base)), **over}) if over else base

    def run_dir(self, method: str, seed: int, task: str | None = None) -> Path:
        root = Path(self.output_dir) / task if (self.multi and task) else Path(self.output_dir)
        return root / method / f"seed-{seed}"

    def plan(self) -> list[tuple[str, str, int]]:
        """(task, method, seed) in run order: seed by seed across every task and method (``order:
        seed``), or task by task, seed by seed within a task (``order: task``)."""
        if self.order == "task":
            return [(t, m, s) for t in self.task_list() for s in self.seeds_of(t) for m in self.methods]
        depth = max(len(self.seeds_of(t)) for t in self.task_list())
        return [(t, m, self.seeds_of(t)[i]) for i in range(depth) for t in self.task_list()
                for m in self.methods if i < len(self.seeds_of(t))]


def run_study(cfg: StudyConfig, progress: bool = True) -> list[Path]:
    """Run every (task, method, seed) not finished yet; return the result files (a grid:
    ``run_grid``)."""
    if cfg.grid:
        return run_grid(cfg, progress)
    check_writable_dir(cfg.output_dir, "output_dir")
    if cfg.lr_grid:
        return run_with_lr_search(cfg, progress, run_cell)
    results = []
    for task, method, seed in cfg.plan():
        result = run_cell(cfg, task, method, seed, progress)
        if result is not None:
            results.append(result)
    return results

GRID_FILE = "grid.json"  # the same name as report_grid.GRID_FILE


@dataclass
class GridPoint:
    slug: str
    overrides: dict[str, Any]
    default: bool = False


def _slug_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_slug_value(v) for v in value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(value))


def point_slug(overrides: dict[str, Any]) -> str:
    """``method_options.ranks=8-8-8+train.lr=0.001``: a directory name for a grid point."""
    return "+".join(f"{k}={_slug_value(v)}" for k, v in overrides.items()) or "default"


def point_study(cfg: StudyConfig, point: GridPoint) -> StudyConfig:
    """The study of one grid point: the study's config with the point's fields on every run."""
    return replace(cfg, grid={}, run_overrides={**cfg.run_overrides, **point.overrides},
                   output_dir=str(Path(cfg.output_dir) / point.slug))


def _same_runs(a: StudyConfig, b: StudyConfig) -> bool:
    def runs(c: StudyConfig) -> list[dict[str, Any]]:
        out = []
        for task, method, seed in c.plan():
            d = to_dict(c.run_config(method, seed, task))
            d.pop("output_dir")
            d["method_options"] = to_dict(method_config(d["method"], d["method_options"]))  # defaults explicit
            out.append(d)
        return out

    return runs(a) == runs(b)


def grid_points(cfg: StudyConfig) -> list[GridPoint]:
    """Every point of the grid (the cartesian product of its fields, in the order given),
    the one equal to the study's own settings marked default (added when there is none)."""
    keys = list(cfg.grid)
    points = [GridPoint(point_slug(dict(zip(keys, values))), dict(zip(keys, values)))
              for values in itertools.product(*(cfg.grid[k] for k in keys))]
    slugs = [p.slug for p in points]
    require(len(set(slugs)) == len(slugs), "grid", f"two grid points share a directory name: {slugs}")
    plain = replace(cfg, grid={})
    for p in points:
        p.default = _same_runs(point_study(cfg, p), plain)
    if not any(p.default for p in points):
        points.insert(0, GridPoint("default", {}, True))
    return points


def run_cell(cfg: StudyConfig, task: str, method: str, seed: int, progress: bool = True) -> Path | None:
    """Run one (task, method, seed) unless finished (or failed before, or running in another
    worker: several ``study`` processes may share one output directory, each cell locked by
    the one training it); its result file, or None when it diverged or runs elsewhere."""
    run = cfg.run_config(method, seed, task)
    out = Path(run.output_dir)
    result, failed = out / "result.json", out / FAILED_FILE
    if result.is_file():
        check_same_base(result, run.base)
        log.info("study: %s %s seed %d already done, skipped", task, method, seed)
        return result
    with try_lock(out.parent / f".{out.name}.lock") as mine:
        if not mine:
            print(f"[study] {task} {method} seed {seed} is running in another process, skipped", flush=True)
            return None
        if result.is_file():  # finished by another worker since the check above
            return result
        if failed.is_file() and not cfg.retry_failed:
            log.info("study: %s %s seed %d failed before (%s), skipped", task, method, seed, failed)
            return None
        # an interrupted run resumes; a failed one (its checkpoints would diverge again) and the
        # leftovers of an attempt without checkpoints are discarded: it starts over
        resume = bool(list_checkpoints(out / "checkpoints")) and not failed.is_file()
        print(f"[study] {task} {method} seed {seed}{' (resuming)' if resume else ''} -> {out}", flush=True)
        try:
            run_finetune(run, resume=resume, progress=progress, overwrite=not resume)
        except TrainingDiverged as err:  # recorded and reported as such; the study goes on
            atomic_write_json(failed, {"error": str(err), "task": task, "method": method, "seed": seed,
                                       "config": to_dict(run), **provenance(seed, base=run.base)})
            print(f"[study] {task} {method} seed {seed} FAILED: {err} (recorded in {failed})", flush=True)
            return None
        if not cfg.keep_checkpoints and result.is_file():
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return result


def run_grid(cfg: StudyConfig, progress: bool = True) -> list[Path]:
    """Every grid point's study, seed by seed across the points (an interrupted grid already
    has its first seeds everywhere); finished runs are skipped, interrupted ones resume."""
    check_writable_dir(cfg.output_dir, "output_dir")
    points = grid_points(cfg)
    manifest = {"grid": cfg.grid, "points": [{"slug": p.slug, "overrides": p.overrides, "default": p.default}
                                             for p in points], "study": to_dict(replace(cfg, grid={}))}
    path = Path(cfg.output_dir) / GRID_FILE
    if not path.is_file() or json.loads(path.read_text()) != json.loads(json.dumps(manifest, default=str)):
        atomic_write_json(path, manifest)
    studies = [point_study(cfg, p) for p in points]
    if cfg.lr_grid:  # each point's rates chosen on its own validation runs, point by point
        return [r for sub in studies for r in run_with_lr_search(sub, progress, run_cell)]
    cells = []
    for k, sub in enumerate(studies):
        for pos, (task, method, seed) in enumerate(sub.plan()):
            cells.append((sub.seeds_of(task).index(seed), k, pos, sub, task, method, seed))
    results = []
    for _, _, _, sub, task, method, seed in sorted(cells, key=lambda c: c[:3]):
        result = run_cell(sub, task, method, seed, progress)
        if result is not None:
            results.append(result)
    return results
