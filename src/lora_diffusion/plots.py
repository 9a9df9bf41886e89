"""PNG figures of training runs (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history_path: str | Path, output: str | Path, title: str = "") -> Path:
    """Training loss (per logged step) and validation NELBO bound per token (right axis)."""
    hist = json.loads(Path(history_path).read_text())
    train = [(h["step"], h["loss"]) for h in hist if "loss" in h]
    val = [(h["step"], h["eval/nelbo_per_token"]) for h in hist if "eval/nelbo_per_token" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), color="tab:blue", alpha=0.6, label="train loss (L_simple, per masked token)")
    if val:
        ax.plot(*zip(*val), "o-", color="tab:red", label="validation NELBO bound (nats/token)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("nats")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or Path(history_path).parent.name)
    return _save(fig, output)


def plot_spectra(result: dict, output: str | Path) -> Path:
    """Normalised singular values of delta_t per phase (``analysis.analyze_rank`` output)."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for name, r in result.items():
        s = list(r["singular_values"])
        total = sum(s)
        if total > 0:
            ax.semilogy(range(1, len(s) + 1), [v / total for v in s],
                        label=f"{name}: r_eff = {r['effective_rank']:.1f} (nominal {r['nominal_rank']})")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("normalised singular value p_i")
    ax.set_title("Spectrum of trajectory perturbations delta_t per phase")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, output)


def grid_series(points: list[dict], numbers: dict[str, dict]) -> dict[str, list[dict]]:
    """Per cell (``task/method``), the grid points in grid order as plot rows: label (the value,
    without the key when the grid has one key), mean, 95% CI bounds, n, the seeds' scores and
    whether it is the default. ``numbers`` is ``report_grid.grid_tables``' second output."""
    keys = {k for p in points for k in p["overrides"]}
    out: dict[str, list[dict]] = {}
    for cell, rows in numbers.items():
        series = []
        for p in points:
            if p["slug"] not in rows:
                continue
            r, s = rows[p["slug"]], rows[p["slug"]]["summary"]
            label = p["slug"].split("=", 1)[1] if len(keys) == 1 and "=" in p["slug"] else p["slug"]
            series.append({"slug": p["slug"], "label": label + (" (default)" if p["default"] else ""), "mean": s["mean"],
                           "low": _or(s.get("ci95_low"), s["mean"]), "high": _or(s.get("ci95_high"), s["mean"]),
                           "n": s["n"], "scores": list(r["scores"].values()), "default": p["default"]})
        out[cell] = series
    return out


def _or(value, fallback: float) -> float:
    """``value`` unless it is missing or NaN (one seed has no interval)."""
    return fallback if value is None or value != value else value


def plot_grid(points: list[dict], numbers: dict[str, dict], output: str | Path, title: str = "") -> Path:
    """Each grid point's mean primary metric with its t-based 95% CI over seeds (bars) and every
    seed's score (dots), one line per (task, method) cell, points in grid order."""
    series = grid_series(points, numbers)
    labels = [row["label"] for rows in series.values() for row in rows]
    labels = list(dict.fromkeys(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) + 2), 4), dpi=120)
    width = 0.6 / max(len(series), 1)
    for i, (cell, rows) in enumerate(sorted(series.items())):
        xs = [labels.index(r["label"]) + (i - (len(series) - 1) / 2) * width for r in rows]
        _draw_cell(ax, xs, rows, cell, "o--", 0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel("primary metric (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title or 'grid study'}: mean, 95% CI over seeds, seeds as dots", fontsize=10)
    return _save(fig, output)


def plot_vs_rows(points: list[dict], numbers: dict[str, dict], rows: dict[str, int], output: str | Path,
                 title: str = "primary metric against training rows") -> Path:
    """Data efficiency: each cell's mean and 95% CI over seeds (and every seed as a dot) against the
    number of training rows its point used (``rows``: {point slug: rows}), log x axis, one line
    per (task, method) cell."""
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for cell, series in sorted(grid_series(points, numbers).items()):
        series = sorted((r for r in series if r["slug"] in rows), key=lambda r: rows[r["slug"]])
        if series:
            _draw_cell(ax, [rows[r["slug"]] for r in series], series, cell, "o-", 1.0)
    ax.set_xscale("log")
    ax.set_xlabel("training rows")
    ax.set_ylabel("primary metric (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: mean, 95% CI over seeds, seeds as dots", fontsize=10)
    return _save(fig, output)


def _draw_cell(ax, xs: list[float], rows: list[dict], label: str, fmt: str, width: float) -> None:
    """One cell's ``grid_series`` rows at ``xs``: means with their CI as error bars, seeds as dots."""
    err = [[r["mean"] - r["low"] for r in rows], [r["high"] - r["mean"] for r in rows]]
    line = ax.errorbar(xs, [r["mean"] for r in rows], yerr=err, fmt=fmt, linewidth=width, capsize=3, label=label)
    for x, r in zip(xs, rows):
        ax.scatter([x] * len(r["scores"]), r["scores"], s=8, alpha=0.5, color=line[0].get_color())


def _save(fig, output: str | Path) -> Path:
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output
