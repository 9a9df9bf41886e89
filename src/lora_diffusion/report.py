"""``lora-diffusion report``: aggregate a study's ``result.json`` files into markdown tables
(accounting, accuracies, efficiency, statistics against full fine-tuning) and PNG figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .report_tasks import mean_step_time
from .runs import base_weights_summary
from .stats import compare_paired, summarize
from .utils.io import atomic_write_text

REFERENCE = "full"


def collect(study_dir: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """{method: {seed: result}} from ``<study>/<method>/seed-<n>/result.json`` (the method's
    directory names it: a labelled variant ``trajectory@deep`` is a method of its own)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(Path(study_dir).glob("*/seed-*/result.json")):
        result = json.loads(path.read_text())
        out.setdefault(path.parent.parent.name, {})[int(result["config"]["train"]["seed"])] = result
    if not out:
        raise FileNotFoundError(f"no */seed-*/result.json under {study_dir}")
    return out


def _fmt(s: dict[str, float], scale: float = 100.0) -> str:
    if s["n"] < 2:
        return f"{scale * s['mean']:.1f}"
    return f"{scale * s['mean']:.1f} +- {scale * s['sd']:.1f} [{scale * s['ci95_low']:.1f}, {scale * s['ci95_high']:.1f}]"


def _metric(runs: dict[int, dict[str, Any]], *keys: str) -> dict[int, float]:
    out = {}
    for seed, r in runs.items():
        value: Any = r
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if value is not None:
            out[seed] = float(value)
    return out


def tables(data: dict[str, dict[int, dict[str, Any]]]) -> str:
    methods = sorted(data, key=lambda m: (m != REFERENCE, m))
    lines = ["## Parameters and storage", "", "| method | trainable | % of base | bytes saved |", "|---|---:|---:|---:|"]
    for m in methods:
        acc = next(iter(data[m].values()))["summary"]["accounting"]
        lines.append(f"| {m} | {acc['trainable_parameters']:,} | {acc['percent_of_base']:.2f}% | {acc.get('bytes_on_disk', 0):,} |")
    lines += ["", "## Accuracy (%; mean +- sd [95% CI] over seeds; final checkpoint)", "",
              "| method | seeds | generation (reported split) | classification head (reported split) "
              "| denoising (reported split) | denoising (train) | generation (validation) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        cols = [_metric(data[m], "dev", "accuracy"), _metric(data[m], "dev", "head_accuracy"),
                _metric(data[m], "dev_denoising", "accuracy"), _metric(data[m], "train_denoising", "accuracy"),
                _metric(data[m], "validation", "generation", "accuracy")]
        cells = [_fmt(summarize(list(c.values()))) if c else "-" for c in cols]
        lines.append(f"| {m} | {len(data[m])} | " + " | ".join(cells) + " |")
    lines += ["", "## Efficiency (mean over seeds)", "",
              "| method | steps | time / step (s) | peak memory (MB) | generation (ms / sample) |", "|---|---:|---:|---:|---:|"]
    for m in methods:
        s = [r["summary"] for r in data[m].values()]
        lat = list(_metric(data[m], "dev", "seconds_per_sample").values())
        lines.append(f"| {m} | {s[0]['steps']} | {mean_step_time(s)} | "
                     f"{sum(x['peak_memory_mb'] for x in s) / len(s):.0f} | "
                     f"{f'{1000 * sum(lat) / len(lat):.1f}' if lat else '-'} |")
    lines += ["", "Peak memory is the process's peak RSS, which only grows over the runs a study makes in one "
              "process; per-method training memory, each method in its own process, is in `lora-diffusion bench`."]
    lines += ["", *statistics_table(data, methods)]
    return "\n".join(lines) + "\n"


def statistics_table(data, methods) -> list[str]:
    if REFERENCE not in data:
        return ["(no full fine-tuning runs: no statistics against it)"]
    ref = _metric(data[REFERENCE], "dev", "accuracy")
    others = [m for m in methods if m != REFERENCE]
    lines = [f"## Generation accuracy against {REFERENCE} (paired by seed, Bonferroni over {len(others)} comparisons)", "",
             "| method | diff (points) | test | p | p (Bonferroni) | Cohen's d | d_z | Shapiro p | Levene p |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for m in others:
        mine = _metric(data[m], "dev", "accuracy")
        seeds = sorted(set(mine) & set(ref))
        if len(seeds) < 3:
            lines.append(f"| {m} | - | fewer than 3 paired seeds | | | | | | |")
            continue
        c = compare_paired([mine[s] for s in seeds], [ref[s] for s in seeds], len(others))
        lines.append(f"| {m} | {100 * c['mean_difference']:+.1f} | {c['test']} | {c['p']:.3g} | {c['p_bonferroni']:.3g} | "
                     f"{c['cohens_d']:.2f} | {c['cohens_dz']:.2f} | {c['shapiro_p']:.3g} | {c['levene_p']:.3g} |")
    return lines


def figures(data, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for m, runs in sorted(data.items()):
        acc = list(_metric(runs, "dev", "accuracy").values())
        n = next(iter(runs.values()))["summary"]["accounting"]["trainable_parameters"]
        s = summarize(acc)
        ax.errorbar([n], [100 * s["mean"]], yerr=[[100 * (s["mean"] - s["ci95_low"])] if s["n"] > 1 else [0]], fmt="o", capsize=3)
        ax.annotate(m, (n, 100 * s["mean"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("generation accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths = [out / "accuracy_vs_parameters.png"]
    fig.savefig(paths[0])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for m, runs in sorted(data.items()):
        first = next(iter(runs.values()))
        hist = json.loads((Path(first["config"]["output_dir"]) / "training_history.json").read_text()) \
            if Path(first["config"]["output_dir"], "training_history.json").is_file() else []
        pts = [(h["step"], h["loss"]) for h in hist if "loss" in h]
        if pts:
            ax.plot(*zip(*pts), label=m)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (first seed)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(out / "learning_curves.png")
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def write_report(study_dir: str | Path, out_dir: str | Path, command: str = "") -> Path:
    data = collect(study_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(data, out)
    text = f"# Study report\n\nStudy: `{study_dir}`" + (f"\n\nCommand: `{command}`" if command else "") + "\n\n"
    text += base_weights_summary(study_dir) + "\n\n" + tables(data) + "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in figs) + "\n"
    return atomic_write_text(out / "report.md", text)
