"""The many-task report (the paper's main-table analogue): methods x tasks, each task's metrics.

Reads ``<study>/<task>/<method>/seed-<n>/result.json``. Every figure is the final checkpoint
on the task's reported split, in percent, mean +- sd over the seeds present (the seed count
is shown); the headline table gives each task's primary metric, the per-task tables every
metric, against the references as the tokenizer writes them and (for free text) as the data
set gives them. Where a task has >= 3 paired seeds, each method is compared with full
fine-tuning (paired t, or Wilcoxon where the differences are not normal and the seeds let it
reject at all: ``stats.compare_paired``; Bonferroni over the methods).
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median
from typing import Any

from .runs import base_of, base_weights_summary
from .stats import compare_paired, summarize
from .utils.io import atomic_write_text

REFERENCE = "full"
ORDER = ("full", "lora", "adapter", "bitfit", "prefix", "trajectory")


def _runs(study_dir: str | Path, name: str) -> list[Path]:
    """``name`` in every run of a many-task study (``<task>/<method>/seed-<n>``) or, failing
    that, of a one-task study (``<method>/seed-<n>``)."""
    return sorted(Path(study_dir).glob(f"*/*/seed-*/{name}")) or sorted(Path(study_dir).glob(f"*/seed-*/{name}"))


def collect_tasks(study_dir: str | Path) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """{task: {method: {seed: result}}} (methods named by their directories: a labelled variant
    ``trajectory@deep`` is a method of its own)."""
    out: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for path in _runs(study_dir, "result.json"):
        r = json.loads(path.read_text())
        logged_step_time(r.get("summary") or {}, path.parent / "training_history.json")
        out.setdefault(r["config"]["task"], {}).setdefault(path.parent.parent.name, {})[
            int(r["config"]["train"]["seed"])] = r
    if not out:
        raise FileNotFoundError(f"no <task>/<method>/seed-*/result.json (or <method>/seed-*/result.json) under "
                                f"{study_dir}")
    return out


def logged_step_time(summary: dict[str, Any], history: Path) -> None:
    """A run recorded by an older version has no ``median_time_per_step_s`` (and one resumed at
    its last step no mean either): take them from the steps its history logged (every
    ``log_every``-th, the first left out), marked ``step_time_source: logged steps``."""
    if summary.get("median_time_per_step_s") is not None or not history.is_file():
        return
    times = [h["time_per_step"] for h in json.loads(history.read_text()) if "time_per_step" in h and h["step"] > 1]
    if times:
        summary.update(median_time_per_step_s=median(times), step_time_source="logged steps")
        if summary.get("mean_time_per_step_s") is None:
            summary["mean_time_per_step_s"] = sum(times) / len(times)


def step_time(summary: dict[str, Any]) -> float | None:
    """A run's train step time (s): the median over its steps, the mean where no median exists."""
    mid = summary.get("median_time_per_step_s")
    return mid if mid is not None else summary.get("mean_time_per_step_s")


def collect_failed(study_dir: str | Path) -> dict[tuple[str, str], list[int]]:
    """{(task, method): seeds whose run diverged (``failed.json``)}."""
    out: dict[tuple[str, str], list[int]] = {}
    for path in _runs(study_dir, "failed.json"):
        r = json.loads(path.read_text())
        out.setdefault((r["task"], r["method"]), []).append(int(r["seed"]))
    return out


def is_multi_task(study_dir: str | Path) -> bool:
    return any(Path(study_dir).glob("*/*/seed-*/result.json"))


def is_free_text_study(study_dir: str | Path) -> bool:
    """A one-task study whose task is scored by another metric than accuracy (free text: this
    report gives its metrics, where the one-task report's columns are accuracies)."""
    for path in Path(study_dir).glob("*/seed-*/result.json"):
        return (json.loads(path.read_text()).get("dev") or {}).get("primary") not in (None, "accuracy")
    return False


def _methods(data, failed: dict[tuple[str, str], list[int]] | None = None) -> list[str]:
    found = {m for runs in data.values() for m in runs} | {m for _, m in (failed or {})}
    return [m for m in ORDER if m in found] + sorted(found - set(ORDER))


def primary(result: dict[str, Any], raw: bool = False) -> float | None:
    dev = result.get("dev") or {}
    metrics = dev.get("metrics_raw" if raw else "metrics") or {}
    return metrics.get(dev.get("primary"))


def _values(runs: dict[int, dict[str, Any]], key: str | None = None, raw: bool = False) -> dict[int, float]:
    out = {}
    for seed, r in runs.items():
        metrics = (r.get("dev") or {}).get("metrics_raw" if raw else "metrics") or {}
        value = primary(r, raw) if key is None else metrics.get(key)
        if value is not None:
            out[seed] = float(value)
    return out


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    s = summarize(values)
    return f"{s['mean']:.1f}" if s["n"] < 2 else f"{s['mean']:.1f} +- {s['sd']:.1f} (n={s['n']})"


def mean_or_none(values) -> float | None:
    """The mean of the values that are not None; None if there are none."""
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def fmt_value(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def mean_step_seconds(runs: dict[int, dict[str, Any]]) -> float | None:
    """Mean over seeds of each run's median train step time (``step_time``)."""
    return mean_or_none(step_time(r.get("summary") or {}) for r in runs.values())


def constant_baseline(study_dir: str | Path, task: str) -> dict[str, Any] | None:
    """The best constant prediction on a classification task's reported split: its most frequent
    gold label and that label's share of the rows in %, i.e. the accuracy of answering it to
    every row. Taken from the reported labels themselves, it is a ceiling for every predictor
    that ignores its input, the floor a trained method has to clear. Read from the first run's
    ``predictions_<split>.jsonl`` (every run of a task scores the same rows; a one-task study's
    runs are all of ``task``): ``{"label", "accuracy", "rows"}``; None for free text (rows without
    ``label``) or without such a file."""
    study = Path(study_dir)
    paths = sorted(study.glob(f"{task}/*/seed-*/predictions_*.jsonl")) or (
        [] if is_multi_task(study) else sorted(study.glob("*/seed-*/predictions_*.jsonl")))  # one task: every run
    if not paths:
        return None
    counts: dict[str, int] = {}
    for line in paths[0].read_text().splitlines():
        row = json.loads(line)
        if row.get("label") is None:
            return None
        word = str((row.get("references") or [row["label"]])[0])
        counts[word] = counts.get(word, 0) + 1
    if not counts:
        return None
    label = max(counts, key=lambda k: counts[k])
    return {"label": label, "accuracy": 100.0 * counts[label] / sum(counts.values()), "rows": sum(counts.values())}


def headline_table(data, failed: dict[tuple[str, str], list[int]] | None = None) -> list[str]:
    tasks, methods = sorted(data), _methods(data, failed)
    heads = [f"{t} ({next(iter(next(iter(data[t].values())).values()))['dev']['primary']})" for t in tasks]
    lines = ["| method | trainable (% of base) | " + " | ".join(heads) + " | mean |",
             "|---|---:|" + "---:|" * (len(tasks) + 1)]
    for m in methods:
        accs = [next(iter(data[t][m].values()))["summary"]["accounting"] for t in tasks if m in data[t]]
        cells, means = [], []
        for t in tasks:
            vals = list(_values(data[t].get(m, {})).values())
            lost = (failed or {}).get((t, m), [])
            cells.append(cell(vals) + (f" (diverged: {len(lost)} seed{'s' if len(lost) > 1 else ''})" if lost else ""))
            if vals:
                means.append(sum(vals) / len(vals))
        avg = f"{sum(means) / len(means):.1f}" if len(means) == len(tasks) else "-"
        pct = trainable_cell(accs)
        lines.append(f"| {m} | {pct} | " + " | ".join(cells) + f" | {avg} |")
    return lines


def trainable_cell(accounts: list[dict[str, Any]]) -> str:
    """Trainable parameters (% of base) of a method over its tasks: one figure, or the range
    when tasks differ (each classification task's head has its own number of labels)."""
    if not accounts:
        return "-"
    low = min(accounts, key=lambda a: a["trainable_parameters"])
    high = max(a["trainable_parameters"] for a in accounts)
    span = f"{low['trainable_parameters']:,}" + (f" to {high:,}" if high != low["trainable_parameters"] else "")
    return f"{span} ({low['percent_of_base']:.2f}%)"


def _bases_note(runs: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """A line naming which runs of a task were made on which base, where they were made on more
    than one (a mean over such seeds mixes bases)."""
    by_base: dict[str | None, list[str]] = {}
    for m in sorted(runs):
        for seed in sorted(runs[m]):
            by_base.setdefault(base_of(runs[m][seed]), []).append(f"{m} {seed}")
    if len(by_base) < 2:
        return []
    parts = [f"{f'`{b}`' if b else 'not recorded'}: {', '.join(names)}" for b, names in by_base.items()]
    return ["", "**Runs on more than one base** (means over these seeds mix bases): " + "; ".join(parts) + "."]


def task_tables(data, study_dir: str | Path | None = None) -> list[str]:
    """Per task: its data (reported split, train rows, budgets, truncation; with ``study_dir``,
    the best constant prediction) and a table of every metric per method."""
    lines: list[str] = []
    for t in sorted(data):
        first = next(iter(next(iter(data[t].values())).values()))
        keys = [k for k in first["dev"]["metrics"] if k != "examples"]
        raw = first["dev"].get("metrics_raw") != first["dev"]["metrics"]
        info = first.get("task", {})
        lines += ["", f"### {t}", "", f"Reported split: {first['eval_split']} ({first['dev_rows']} rows); "
                  f"train rows {first['train_rows']:,}; response budget {info.get('response_budget')} tokens, "
                  f"prompt budget {info.get('max_prompt_len')}; truncated prompts in train "
                  f"{first.get('train_truncated', 0):,}, responses {first.get('train_truncated_responses', 0):,}."
                  + _constant_note(study_dir, t),
                  f"{info.get('notes', '')}", *_bases_note(data[t]), ""]
        cols = keys + ([f"{k} (raw refs)" for k in keys] if raw else [])
        extra = ["generation acc.", "head acc."] if "head_accuracy" in first["dev"] else []
        lines += ["| method | " + " | ".join(cols + extra) + " | train s/step (median; *: of the logged steps) | "
                  "s / sample (generation) |",
                  "|---|" + "---:|" * (len(cols) + len(extra) + 2)]
        for m in _methods({t: data[t]}):
            runs = data[t][m]
            vals = [cell(list(_values(runs, k).values())) for k in keys]
            if raw:
                vals += [cell(list(_values(runs, k, raw=True).values())) for k in keys]
            for key in ("accuracy", "head_accuracy")[: len(extra)]:
                vals.append(cell([100 * r["dev"][key] for r in runs.values() if key in r["dev"]]))
            step = mean_step_time([r["summary"] for r in runs.values()])
            gen = sum(r["dev"]["seconds_per_sample"] for r in runs.values()) / len(runs)
            lines.append(f"| {m} | " + " | ".join(vals) + f" | {step} | {gen:.3f} |")
    return lines


def _constant_note(study_dir: str | Path | None, task: str) -> str:
    const = None if study_dir is None else constant_baseline(study_dir, task)
    return "" if const is None else (f" Best constant prediction (`{const['label']}` to every row, the most "
                                     f"frequent gold label): {const['accuracy']:.1f}%.")


def mean_step_time(summaries: list[dict[str, Any]]) -> str:
    """Mean over runs of each run's median train step time (``step_time``); ``-`` when no run
    timed a step; ``*`` when a figure comes from the logged steps (``logged_step_time``)."""
    times = [t for t in map(step_time, summaries) if t is not None]
    logged = any(s.get("step_time_source") == "logged steps" for s in summaries)
    return f"{sum(times) / len(times):.3f}{'*' if logged else ''}" if times else "-"


def statistics(data) -> list[str]:
    lines = ["| task | method | diff vs full (points) | test | p (Bonferroni) | d_z |", "|---|---|---:|---|---:|---:|"]
    for t in sorted(data):
        if REFERENCE not in data[t]:
            continue
        ref = _values(data[t][REFERENCE])
        others = [m for m in _methods({t: data[t]}) if m != REFERENCE]
        for m in others:
            mine = _values(data[t][m])
            seeds = sorted(set(mine) & set(ref))
            if len(seeds) < 3:
                continue
            c = compare_paired([mine[s] for s in seeds], [ref[s] for s in seeds], len(others))
            lines.append(f"| {t} | {m} | {c['mean_difference']:+.1f} | {c['test']} | {c['p_bonferroni']:.3g} | "
                         f"{c['cohens_dz']:.2f} |")
    return lines if len(lines) > 2 else ["(no task has 3 paired seeds yet)"]


def figure(data, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, methods = sorted(data), _methods(data)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(tasks)), 4), dpi=120)
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        means = []
        for t in tasks:
            vals = list(_values(data[t].get(m, {})).values())
            means.append(sum(vals) / len(vals) if vals else 0.0)
        ax.bar([j + i * width for j in range(len(tasks))], means, width, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=30, ha="right")
    ax.set_ylabel("primary metric (%, mean over seeds)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "tasks_primary_metric.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def write_task_report(study_dir: str | Path, out_dir: str | Path, command: str = "") -> Path:
    data, failed = collect_tasks(study_dir), collect_failed(study_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = figure(data, out)
    text = [f"# Many-task study: {len(data)} tasks x {len(_methods(data))} methods", "", f"Study: `{study_dir}`"]
    if command:
        text += ["", f"Command: `{command}`"]
    text += ["", base_weights_summary(study_dir), "", "## Primary metric per task (%, final checkpoint, reported split)", "", *headline_table(data, failed),
             "", f"![primary metric per task]({fig.name})", "", "## Every metric, per task", *task_tables(data, study_dir),
             "", "## Against full fine-tuning (tasks with >= 3 paired seeds)", "", *statistics(data)]
    return atomic_write_text(out / "report.md", "\n".join(text) + "\n")
