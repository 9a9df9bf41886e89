"""The quality study's report (issue #13): fair budgets, rates chosen on validation, the target.

Reads a study written with a learning-rate search (``StudyConfig.lr_grid``):
``<study>/<task>/<method>/seed-<n>/{result.json, training_history.json}`` and
``<study>/lr-search/<task>/<method>.json`` (the runs under ``lr-search/lr=<v>/`` are read only
through those records). Methods are named by their directories (``trajectory@deep`` is a method
of its own). Every run trained until its validation primary metric stopped improving (the
validation rows are carved from train); its selected step was evaluated once on the reported
split. Sections of ``report.md``:

1. the target of the issue, per task (``target_table``), and read from the best constant
   prediction (``constant_table``);
2. the reported-split tables of the many-task report (``report_tasks.headline_table``,
   ``report_tasks.statistics``): the equal-steps view, each method at its own early stop;
3. the learning-rate search (``lr_table``), the budgets and selection (``budget_table``);
4. the equal-wall-clock comparison and learning curves (``report_curves``), a Pareto figure.

Missing tasks, methods, seeds or validation read as ``-``: the report is regenerated while the
study runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .report_curves import TRAJECTORY, _plt, curves_figure, wall_clock_table
from .report_tasks import (
    REFERENCE,
    _methods,
    _values,
    cell,
    collect_failed,
    collect_tasks,
    constant_baseline,
    fmt_value,
    headline_table,
    mean_or_none,
    mean_step_seconds,
    statistics,
)
from .stats import compare_paired
from .study_lr import SEARCH_DIR
from .utils.io import atomic_write_text

MIN_RATIO, MAX_TRAINABLE, MAX_STEP_RATIO = 99.0, 2.0, 0.40  # the issue's target
TARGET = ("the best trajectory variant's generation accuracy (the task's primary metric) at least 99% of "
          "full fine-tuning's, with at most 2% of the base's parameters trainable and a train step at most "
          "0.40x full fine-tuning's")


def is_quality(study_dir: str | Path) -> bool:
    """A study with a learning-rate search (``<study>/lr-search/``)."""
    return (Path(study_dir) / SEARCH_DIR).is_dir()


def is_trajectory(method: str) -> bool:
    return method == TRAJECTORY or method.startswith(TRAJECTORY + "@")


def validation_primary(result: dict[str, Any]) -> float | None:
    """The primary metric on the validation rows (carved from train) of the selected step."""
    gen = (result.get("validation") or {}).get("generation") or {}
    value = (gen.get("metrics") or {}).get(gen.get("primary"))
    return None if value is None else float(value)


def _summary(runs: dict[int, dict[str, Any]], key: str) -> float | None:
    """Mean over seeds of ``summary[key]``."""
    return mean_or_none((r.get("summary") or {}).get(key) for r in runs.values())


def _percent_of_base(runs: dict[int, dict[str, Any]]) -> float | None:
    for r in runs.values():
        acc = (r.get("summary") or {}).get("accounting")
        if acc:
            return float(acc["percent_of_base"])
    return None


def _met(ok: bool | None) -> str:
    return "-" if ok is None else "yes" if ok else "no"


def choose_variant(runs_by_method: dict[str, dict[int, dict[str, Any]]]) -> tuple[str | None, float | None]:
    """The trajectory-family method with the highest mean validation primary over its seeds (the
    first in report order on a tie); never chosen on the reported split. (None, None) if no
    trajectory-family run has a validation score yet."""
    best: tuple[str | None, float | None] = (None, None)
    for m in _methods({"_": runs_by_method}):
        if not is_trajectory(m):
            continue
        v = mean_or_none(validation_primary(r) for r in runs_by_method[m].values())
        if v is not None and (best[1] is None or v > best[1]):
            best = (m, v)
    return best


def step_ratio(task_runs, variant: str, bench: dict[str, Any] | None) -> tuple[float | None, str]:
    """Variant's train step time / full fine-tuning's: side by side from ``bench`` (its
    ``training[method]["median_s"]``; ``<method>+bf16`` where the variant's runs trained under
    bf16 autocast and the bench timed both so) when it has both, else from the study's runs (the
    mean over seeds of each run's median step time). Returns (ratio, source)."""
    timed = (bench or {}).get("training") or {}
    bf16 = any(((r.get("config") or {}).get("train") or {}).get("mixed_precision") == "bf16"
               for r in task_runs.get(variant, {}).values())
    for suffix in (("+bf16", "") if bf16 else ("",)):
        if variant + suffix in timed and REFERENCE + suffix in timed:
            return timed[variant + suffix]["median_s"] / timed[REFERENCE + suffix]["median_s"], "bench"
    mine, ref = mean_step_seconds(task_runs.get(variant, {})), mean_step_seconds(task_runs.get(REFERENCE, {}))
    return (mine / ref if mine is not None and ref else None), "runs"


def target_table(data, bench: dict[str, Any] | None = None) -> list[str]:
    """Per task: the chosen variant (highest validation mean), its reported-split primary metric
    (mean +- sd over seeds) beside full fine-tuning's, their ratio in % (met at >= 99), its
    trainable share of the base (met at <= 2%), its step-time ratio to full (met at <= 0.40),
    the paired test against full over the common seeds (>= 3), and the target met or not
    ("pending" while a criterion cannot be read yet)."""
    lines = ["| task (metric) | variant (validation mean) | variant | full | ratio (%) | >= 99%? | trainable (%) | "
             "<= 2%? | step-time ratio | <= 0.40x? | paired test vs full | target |",
             "|---|---|---:|---:|---:|:-:|---:|:-:|---:|:-:|---|:-:|"]
    for t in sorted(data):
        runs = data[t]
        metric = next((r["dev"]["primary"] for m in runs.values() for r in m.values() if r.get("dev")), "primary")
        variant, val = choose_variant(runs)
        ref = _values(runs.get(REFERENCE, {}))
        if variant is None:
            lines.append(f"| {t} ({metric}) | - (no validation score yet) | - | {cell(list(ref.values()))} |"
                         + " - |" * 8)
            continue
        mine = _values(runs[variant])
        m_mean, r_mean = mean_or_none(mine.values()), mean_or_none(ref.values())
        ratio = 100 * m_mean / r_mean if m_mean is not None and r_mean else None
        pct = _percent_of_base(runs[variant])
        steps, source = step_ratio(runs, variant, bench)
        checks = [None if ratio is None else ratio >= MIN_RATIO, None if pct is None else pct <= MAX_TRAINABLE,
                  None if steps is None else steps <= MAX_STEP_RATIO]
        seeds = sorted(set(mine) & set(ref))
        test = "-"
        if len(seeds) >= 3:
            c = compare_paired([mine[s] for s in seeds], [ref[s] for s in seeds])
            test = f"{c['mean_difference']:+.1f} points, {c['test']} p = {c['p']:.3g} (n={len(seeds)})"
        overall = "not met" if False in checks else "pending" if None in checks else "met"
        lines.append(f"| {t} ({metric}) | {variant} ({fmt_value(val)}) | {cell(list(mine.values()))} | "
                     f"{cell(list(ref.values()))} | {fmt_value(ratio)} | {_met(checks[0])} | {fmt_value(pct, '.2f')} | "
                     f"{_met(checks[1])} | {fmt_value(steps, '.2f')}{' (bench)' if source == 'bench' and steps else ''} | "
                     f"{_met(checks[2])} | {test} | **{overall}** |")
    return lines


def constant_table(study_dir: str | Path, data) -> list[str]:
    """Per classification task: the best constant prediction (``report_tasks.constant_baseline``)
    beside full fine-tuning and the chosen variant (means over seeds), full fine-tuning's gain
    over it in points and the share of that gain the variant reaches, 100 x (variant - constant)
    / (full - constant): the target's ratio read from the floor instead of from zero."""
    lines = ["| task | rows | most frequent label | constant (%) | full | variant | full's gain over constant "
             "(points) | variant's share of that gain (%) |", "|---|---:|---|---:|---:|---|---:|---:|"]
    for t in sorted(data):
        const = constant_baseline(study_dir, t)
        if const is None:
            continue
        variant, _ = choose_variant(data[t])
        full = mean_or_none(_values(data[t].get(REFERENCE, {})).values())
        mine = mean_or_none(_values(data[t][variant]).values()) if variant else None
        gain = None if full is None else full - const["accuracy"]
        share = 100 * (mine - const["accuracy"]) / gain if mine is not None and gain else None
        chosen = f"{variant} {fmt_value(mine)}" if variant else "-"
        lines.append(f"| {t} | {const['rows']} | {const['label']} | {const['accuracy']:.1f} | {fmt_value(full)} | "
                     f"{chosen} | {fmt_value(gain, '+.1f')} | {fmt_value(share)} |")
    return lines if len(lines) > 2 else ["(no classification task with a predictions file yet)"]


def collect_lr_search(study_dir: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {method: the record of ``lr-search/<task>/<method>.json``}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted((Path(study_dir) / SEARCH_DIR).glob("*/*.json")):
        rec = json.loads(path.read_text())
        out.setdefault(rec.get("task", path.parent.name), {})[rec.get("method", path.stem)] = rec
    return out


def lr_table(records: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Per task and method: each rate of the grid with the validation primary of the search run
    at that rate (the task's first seed; ``diverged`` where it did not finish), and the rate
    chosen (the highest validation score; ties: first in the grid), in bold in the grid, marked
    ``(edge)`` where it is the grid's lowest or highest rate (the best rate may lie beyond it)."""
    if not records:
        return ["(no learning-rate search record yet)"]
    lines = ["| task | method | seed | validation primary at each rate | chosen rate | search budget |",
             "|---|---|---:|---|---:|---|"]
    for t in sorted(records):
        for m in _methods({t: records[t]}):
            rec = records[t][m]
            scores, chosen = rec.get("validation_primary") or {}, rec.get("chosen_lr")
            grid = []
            for lr in rec.get("grid") or []:
                key = f"{float(lr):g}"
                text = f"{key}: {'diverged' if scores.get(key) is None else format(scores[key], '.1f')}"
                grid.append(f"**{text}**" if chosen is not None and key == f"{float(chosen):g}" else text)
            budget = ", ".join(f"{k}={v}" for k, v in (rec.get("search_overrides") or {}).items()) or "the study's"
            rates = [float(r) for r in rec.get("grid") or []]
            edge = chosen is not None and len(rates) > 1 and float(chosen) in (min(rates), max(rates))
            lines.append(f"| {t} | {m} | {rec.get('seed', '-')} | {', '.join(grid) or '-'} | "
                         f"{'-' if chosen is None else format(float(chosen), 'g')}{' (edge)' if edge else ''} | "
                         f"{budget} |")
    return lines


def budget_table(data) -> list[str]:
    """Per task and method, means over the seeds present: the step selected on validation, the
    steps trained (selected step + the patience that ran out, or the step cap), how many seeds
    early stopping ended (``selection.early_stopped_at`` set), training wall time (evaluations
    included) and train step time."""
    lines = ["| task | method | seeds | selected step | steps trained | early-stopped seeds | wall time (s) | "
             "train s/step |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for t in sorted(data):
        for m in _methods({t: data[t]}):
            runs = data[t][m]
            sel = [(r.get("summary") or {}).get("selection") for r in runs.values()]
            sel = [s for s in sel if s]
            stopped = f"{sum(s.get('early_stopped_at') is not None for s in sel)}/{len(sel)}" if sel else "-"
            lines.append(f"| {t} | {m} | {len(runs)} | {fmt_value(mean_or_none(s.get('selected_step') for s in sel), '.0f')} | "
                         f"{fmt_value(_summary(runs, 'steps'), '.0f')} | {stopped} | "
                         f"{fmt_value(_summary(runs, 'wall_time_s'), '.0f')} | "
                         f"{fmt_value(mean_step_seconds(runs), '.3f')} |")
    return lines


def pareto_figure(data, out: Path, bench: dict[str, Any] | None = None,
                  floors: dict[str, float] | None = None) -> Path | None:
    """One panel per task: trainable % of base (log x) vs mean reported primary metric, marker
    area proportional to the train step time as a multiple of full fine-tuning's (``step_ratio``:
    side by side from ``bench`` where it timed the method, else from the runs), each point
    labelled with its method and that ratio; dashed: the task's best constant prediction
    (``floors``, where known)."""
    points = {}
    for t in sorted(data):
        for m in _methods({t: data[t]}):
            runs = data[t][m]
            x, y = _percent_of_base(runs), mean_or_none(_values(runs).values())
            if x is not None and x > 0 and y is not None:
                points.setdefault(t, []).append((m, x, y, 1.0 if m == REFERENCE else step_ratio(data[t], m, bench)[0]))
    if not points:
        return None
    plt = _plt()
    cols = min(2, len(points))
    rows = (len(points) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), dpi=110, squeeze=False)
    slowest = max((p[3] or 0 for ps in points.values() for p in ps), default=0) or 1.0
    for ax, (t, ps) in zip(axes.flat, points.items()):
        for m, x, y, ratio in ps:
            ax.scatter(x, y, s=20 + 280 * (ratio or 0) / slowest, alpha=0.6,
                       color="tab:red" if is_trajectory(m) else "tab:blue")
            ax.annotate(f"{m} ({fmt_value(ratio, '.2f')}x)", (x, y), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_title(t)
        ax.set_xlabel("trainable parameters (% of base, log)")
        ax.set_ylabel("primary metric (%, reported split)")
        ax.axvline(MAX_TRAINABLE, color="grey", linestyle=":", linewidth=1)
        if (floors or {}).get(t) is not None:
            ax.axhline(floors[t], color="grey", linestyle="--", linewidth=1, label="best constant prediction")
            ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(points):]:
        ax.axis("off")
    fig.tight_layout()
    path = out / "pareto.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def write_quality_report(study_dir: str | Path, out_dir: str | Path, command: str = "",
                         bench: str | Path | None = None) -> Path:
    """``report.md`` and its PNGs in ``out_dir``; ``bench``: a ``bench.json`` for side-by-side
    step times. FileNotFoundError (one line) for a missing study or one without results."""
    if not Path(study_dir).is_dir():
        raise FileNotFoundError(f"{study_dir}: no such study directory")
    data, failed = collect_tasks(study_dir), collect_failed(study_dir)
    bench_data = json.loads(Path(bench).read_text()) if bench else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = _methods(data, failed)
    text = [f"# Quality study: {len(data)} tasks x {len(methods)} methods", "", f"Study: `{study_dir}`"]
    if command:
        text += ["", f"Command: `{command}`"]
    timed = ("from the side-by-side benchmark `" + str(bench) + "` (median train step, interleaved)"
             if bench_data else "from the study's own runs (mean over seeds of each run's median train s/step); "
             "these were measured in separate runs, possibly beside other jobs on the machine")
    text += ["", "## Target", "", f"Target: {TARGET}.", "",
             "The variant is chosen per task among the trajectory methods (`trajectory`, `trajectory@*`) by its "
             "mean over seeds of the primary metric on the validation rows (carved from train), never on the "
             "reported split, so that its reported figure is not a best-of-many. Ratio: the means over the seeds "
             "present; the paired test over the seeds both have (>= 3), one comparison per task. Step-time ratio "
             f"{timed} (a `(bench)` mark where the benchmark had both methods).", "", *target_table(data, bench_data),
             "", "The same comparison read from the best constant prediction (the most frequent gold label of the "
             "reported split, answered to every row; no method that ignores its input can score more), so that a "
             "ratio near 100% between two methods that barely clear it is not read as a success:", "",
             *constant_table(study_dir, data),
             "", "## Primary metric per task (%, step selected on validation, reported split)", "",
             "The equal-steps view: every method trained to its own early stop (or step cap).", "",
             *headline_table(data, failed), "", "## Against full fine-tuning (tasks with >= 3 paired seeds)", "",
             *statistics(data), "", "## Learning-rate search", "",
             "Each method's grid at the task's first seed; the score is the validation primary metric; the "
             "chosen rate (bold) trains every seed; `(edge)`: the grid's lowest or highest rate was chosen, so "
             "a better one may lie beyond it.", "", *lr_table(collect_lr_search(study_dir)), "",
             "## Budgets and model selection", "",
             "Means over seeds; early-stopped: seeds whose patience ran out before the step cap.", "",
             *budget_table(data), "", "## Equal wall-clock comparison", "",
             f"W: the training time of `{TRAJECTORY}` on the task (steps x median s/step, mean over seeds). For each "
             "method, the validation primary metric (not the reported split) at its last evaluation within W "
             "(step x its median train s/step <= W), mean over seeds. The equal-steps view is the main table above "
             "(every method trained to its own early stop).", "", *wall_clock_table(study_dir, data),
             "", "## Learning curves (validation)", ""]
    for t in sorted(data):
        path = curves_figure(study_dir, data, t, out)
        text += [f"![{t} learning curves]({path.name})" if path else f"{t}: no validation evaluation recorded yet.",
                 ""]
    floors = {t: c["accuracy"] for t in data if (c := constant_baseline(study_dir, t))}
    pareto = pareto_figure(data, out, bench_data, floors)
    text += ["## Trainable parameters vs quality", "",
             "Trainable % of base (log) vs mean reported primary metric per task; marker area proportional to "
             "the train step as a multiple of full fine-tuning's (the label's figure; from the bench where it "
             "timed the method, as in the target table); dotted: the 2% budget; dashed: the best constant "
             "prediction.", "",
             f"![pareto]({pareto.name})" if pareto else "(no run with parameter accounting yet)"]
    return atomic_write_text(out / "report.md", "\n".join(text) + "\n")
