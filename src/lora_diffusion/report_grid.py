"""The grid (ablation) report: each grid point beside the default, with statistics over seeds.

Reads ``<study>/grid.json`` (written by ``study.run_grid``) and every
``<study>/<point>/[<task>/]<method>/seed-<n>/result.json``. Per (task, method) one table:
each point's primary metric on the reported split (final checkpoint, %) as mean +- sd and
the t-based 95% CI over its seeds, and its difference from the default point over the seeds
both have. The verdict:

- >= 3 paired seeds: ``stats.compare_paired`` (paired t, or Wilcoxon when the differences are
  not normal and enough seeds let it reject at all), Bonferroni over the non-default points;
  p_adj >= 0.05 is "not distinguishable from noise";
- 2 seeds: no test; overlapping 95% CIs are "not distinguishable from noise";
- 1 seed: "not distinguishable from noise (one seed)".

Where a task's cells hold several methods, one of them the reference (``full``), a second set of
tables puts every method beside the reference at each grid point (paired over seeds, Bonferroni
over the other methods at that point, and the method's mean as a share of the reference's): the
data-efficiency question, "how close to full fine-tuning with 1% of the rows", read directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median
from typing import Any

from .plots import plot_grid, plot_vs_rows
from .report_tasks import primary, trainable_cell
from .runs import base_weights_summary
from .stats import ALPHA, compare_paired, summarize
from .utils.io import atomic_write_json, atomic_write_text

GRID_FILE = "grid.json"
NOISE = "not distinguishable from noise"


def is_grid(study_dir: str | Path) -> bool:
    return (Path(study_dir) / GRID_FILE).is_file()


def score(result: dict[str, Any]) -> float | None:
    """The run's primary metric in % (a task's headline metric, else generation accuracy)."""
    value = primary(result)
    if value is None and (result.get("dev") or {}).get("accuracy") is not None:
        value = 100 * float(result["dev"]["accuracy"])
    return None if value is None else float(value)


def collect_grid(study_dir: str | Path) -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, dict[int, float]]],
                                                dict[tuple[str, str], dict[str, dict[str, list[float]]]]]:
    """(points, {(task, method): {point slug: {seed: score}}}, costs): costs has, per cell and
    point, the runs' trainable parameters, % of the base, median train-step seconds and the
    training rows they used (``train_rows``, as each run recorded it)."""
    root = Path(study_dir)
    manifest = json.loads((root / GRID_FILE).read_text())
    data: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    costs: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {}
    for point in manifest["points"]:
        for path in sorted((root / point["slug"]).rglob("seed-*/result.json")):
            if "lr-search" in path.relative_to(root).parts:  # the rate search's runs: not the point's results
                continue
            r = json.loads(path.read_text())
            value = score(r)
            if value is None:
                continue
            key = (r["config"].get("task", ""), path.parent.parent.name)  # a labelled variant by its directory
            data.setdefault(key, {}).setdefault(point["slug"], {})[int(r["config"]["train"]["seed"])] = value
            summary = r.get("summary") or {}
            acc = summary.get("accounting") or {}
            cost = costs.setdefault(key, {}).setdefault(point["slug"], {"trainable": [], "percent": [], "step_s": [],
                                                                        "train_rows": []})
            for name, v in (("trainable", acc.get("trainable_parameters", summary.get("trainable_parameters"))),
                            ("percent", acc.get("percent_of_base")),
                            ("step_s", summary.get("median_time_per_step_s", summary.get("mean_time_per_step_s"))),
                            ("train_rows", r.get("train_rows"))):
                if v is not None:
                    cost[name].append(float(v))
    if not data:
        raise FileNotFoundError(f"no finished runs (<point>/<method>/seed-*/result.json) under {study_dir}")
    return manifest["points"], data, costs


def training_rows(costs) -> dict[str, int]:
    """{point slug: training rows}, the median over the point's runs of each run's ``train_rows``."""
    found: dict[str, list[float]] = {}
    for by_point in costs.values():
        for slug, c in by_point.items():
            found.setdefault(slug, []).extend(c.get("train_rows", []))
    return {slug: int(median(v)) for slug, v in found.items() if v}


def _cost(c: dict[str, list[float]] | None) -> tuple[str, str]:
    """('1,030,098 (4.53%)', '0.275'): the point's trainable size and median train-step seconds."""
    if not c:
        return "-", "-"
    accounts = [{"trainable_parameters": int(t), "percent_of_base": pct} for t, pct in zip(c["trainable"], c["percent"])]
    return trainable_cell(accounts), f"{median(c['step_s']):.3f}" if c["step_s"] else "-"


def verdict(mine: dict[int, float], ref: dict[int, float], comparisons: int) -> dict[str, Any]:
    seeds = sorted(set(mine) & set(ref))
    x, y = [mine[s] for s in seeds], [ref[s] for s in seeds]
    out: dict[str, Any] = {"paired_seeds": len(seeds),
                           "difference": (sum(x) - sum(y)) / len(seeds) if seeds else None}
    if len(seeds) >= 3:
        c = compare_paired(x, y, comparisons)
        out.update(test=c["test"], p_bonferroni=c["p_bonferroni"], cohens_dz=c["cohens_dz"])
        p = c["p_bonferroni"]
        out["verdict"] = (f"distinguishable ({c['test']}, p_adj={p:.3g})" if p == p and p < ALPHA
                          else f"{NOISE} ({c['test']}, p_adj={p:.3g})")
    elif len(seeds) == 2:
        a, b = summarize(x), summarize(y)
        overlap = a["ci95_low"] <= b["ci95_high"] and b["ci95_low"] <= a["ci95_high"]
        out["verdict"] = f"{NOISE} (95% CIs overlap; 2 seeds, no test)" if overlap else \
            "95% CIs do not overlap (2 seeds, no test)"
    else:
        out["verdict"] = f"{NOISE} ({'one seed' if seeds else 'no paired seeds'})"
    return out


def _cell(values: list[float]) -> str:
    s = summarize(values)
    if s["n"] < 2:
        return f"{s['mean']:.2f} (n=1)"
    return f"{s['mean']:.2f} +- {s['sd']:.2f} [{s['ci95_low']:.2f}, {s['ci95_high']:.2f}] (n={s['n']})"


def grid_tables(points: list[dict[str, Any]], data, costs=None) -> tuple[list[str], dict[str, Any]]:
    default = next(p["slug"] for p in points if p["default"])
    lines: list[str] = []
    numbers: dict[str, Any] = {}
    for (task, method), runs in sorted(data.items()):
        others = [p for p in points if not p["default"] and p["slug"] in runs]
        lines += ["", f"### {task} / {method}" if task else f"### {method}", "",
                  "| grid point | primary metric (%) mean +- sd [95% CI] | diff vs default (paired) | verdict "
                  "| trainable (% of base) | step (s) |",
                  "|---|---|---:|---|---:|---:|"]
        rows = {}
        for p in points:
            if p["slug"] not in runs:
                lines.append(f"| {p['slug']}{' **(default)**' if p['default'] else ''} | (no finished run) | | | | |")
                continue
            vals = runs[p["slug"]]
            cost = ((costs or {}).get((task, method)) or {}).get(p["slug"])
            size, step = _cost(cost)
            if p["default"]:
                v = {"verdict": "reference"}
                lines.append(f"| {p['slug']} **(default)** | {_cell(list(vals.values()))} | | reference | {size} | {step} |")
            else:
                v = verdict(vals, runs.get(default, {}), max(len(others), 1))
                diff = f"{v['difference']:+.2f}" if v["difference"] is not None else "-"
                lines.append(f"| {p['slug']} | {_cell(list(vals.values()))} | {diff} | {v['verdict']} | {size} | {step} |")
            rows[p["slug"]] = {"overrides": p["overrides"], "default": p["default"], "scores": vals,
                               "summary": summarize(list(vals.values())), **v, "cost": cost or {}}
        numbers[f"{task}/{method}" if task else method] = rows
    return lines, numbers


def reference_tables(points: list[dict[str, Any]], data, reference: str = "full") -> tuple[list[str], dict[str, Any]]:
    """Per task and grid point, every other method against ``reference`` (paired over seeds).

    Returns (markdown lines, {task: {point: {method: verdict fields + summary + share}}}); empty
    when no task has the reference and at least one other method. ``share`` is
    100 * mean(method) / mean(reference) over each side's own seeds."""
    lines: list[str] = []
    numbers: dict[str, Any] = {}
    for task in sorted({t for t, _ in data}):
        methods = sorted(m for t, m in data if t == task and m != reference)
        ref = data.get((task, reference))
        if not ref or not methods:
            continue
        for p in points:
            slug = p["slug"]
            if slug not in ref:
                continue
            present = [m for m in methods if slug in data[(task, m)]]
            ref_vals = ref[slug]
            ref_mean = summarize(list(ref_vals.values()))["mean"]
            label = f"{slug}{' (default)' if p['default'] else ''}"
            lines += ["", f"### {task + ' / ' if task else ''}{label}: every method against {reference}", "",
                      "| method | mean +- sd [95% CI] | % of " + reference + " | diff vs " + reference
                      + " (paired) | verdict |", "|---|---|---:|---:|---|",
                      f"| {reference} | {_cell(list(ref_vals.values()))} | 100.0 | | reference |"]
            rows: dict[str, Any] = {}
            for m in present:
                vals = data[(task, m)][slug]
                v = verdict(vals, ref_vals, max(len(present), 1))
                s = summarize(list(vals.values()))
                share = 100 * s["mean"] / ref_mean if ref_mean else float("nan")
                diff = f"{v['difference']:+.2f}" if v["difference"] is not None else "-"
                lines.append(f"| {m} | {_cell(list(vals.values()))} | {share:.1f} | {diff} | {v['verdict']} |")
                rows[m] = {"scores": vals, "summary": s, "share_of_reference": share, **v}
            numbers.setdefault(task, {})[slug] = {"reference": reference, "reference_scores": ref_vals,
                                                  "methods": rows}
        if task in numbers:
            lines[:0] = _matrix(task, points, numbers[task], reference)
    return lines, numbers


def _matrix(task: str, points: list[dict[str, Any]], by_point: dict[str, Any], reference: str) -> list[str]:
    """One table for a task: methods as rows, grid points as columns, 'mean +- sd (% of reference)'."""
    slugs = [p["slug"] for p in points if p["slug"] in by_point]
    names = {p["slug"]: p["slug"] + (" (default)" if p["default"] else "") for p in points}
    methods = [reference] + sorted({m for slug in slugs for m in by_point[slug]["methods"]})
    out = ["", f"### {task + ': ' if task else ''}every method at every point (mean +- sd, % of {reference})", "",
           "| method | " + " | ".join(names[s] for s in slugs) + " |", "|---|" + "---:|" * len(slugs)]
    for m in methods:
        cells = []
        for slug in slugs:
            point = by_point[slug]
            if m == reference:
                s = summarize(list(point["reference_scores"].values()))
                share = 100.0
            elif m in point["methods"]:
                s, share = point["methods"][m]["summary"], point["methods"][m]["share_of_reference"]
            else:
                cells.append("-")
                continue
            sd = f" +- {s['sd']:.2f}" if s["n"] > 1 else ""
            cells.append(f"{s['mean']:.2f}{sd} ({share:.1f}%)")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return out


def write_grid_report(study_dir: str | Path, out_dir: str | Path, command: str = "") -> Path:
    points, data, costs = collect_grid(study_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines, numbers = grid_tables(points, data, costs)
    grid = json.loads((Path(study_dir) / GRID_FILE).read_text())["grid"]
    text = [f"# Grid study: {len(points)} points", "", f"Study: `{study_dir}`"]
    if command:
        text += ["", f"Command: `{command}`"]
    text += ["", base_weights_summary(study_dir)]
    text += ["", "Grid: " + ", ".join(f"`{k}` in {v}" for k, v in grid.items()) + ". The default point is the "
             "study's own settings. Differences are paired over the seeds both points have; with >= 3 seeds a "
             "paired t-test (Wilcoxon when the differences are not normal and there are seeds enough for it to reject at "
             "all: six or more for one comparison, more under Bonferroni; below that the t-test, marked 'd not normal'), "
             "Bonferroni over the non-default points; "
             f"'{NOISE}' when p_adj >= {ALPHA} (or, with 2 seeds, when the 95% CIs overlap). Trainable: the "
             "runs' own accounting; step: the median over seeds of each run's median train-step seconds, as "
             "recorded on whatever shared the machine (compare within one study, not across machines).", *lines]
    text += ["", "Figure: `grid.png` (each point's mean and 95% CI over seeds, every seed as a dot)."]
    ref_lines, against = reference_tables(points, data)
    if ref_lines:
        text += ["", "## Every method against full fine-tuning at each point", "",
                 "The same runs read the other way: at each grid point, each method's scores paired by seed "
                 "with full fine-tuning's, Bonferroni over the methods at that point; '% of full' is the ratio "
                 "of the two means.", *ref_lines]
    atomic_write_json(out / "grid_report.json", {"grid": grid, "points": points, "results": numbers,
                                                 "against_reference": against})
    plot_grid(points, numbers, out / "grid.png", title=" x ".join(grid) or Path(study_dir).name)
    rows = training_rows(costs)
    if len(set(rows.values())) > 1:  # the points differ in how much data they trained on
        plot_vs_rows(points, numbers, rows, out / "data_efficiency.png")
        text += ["", "Figure: `data_efficiency.png` (the same means and 95% CIs against the training rows each "
                 "point used, as the runs recorded them, on a log axis)."]
    return atomic_write_text(out / "report.md", "\n".join(text) + "\n")


def summary_table(reports: dict[str, dict[str, Any]]) -> list[str]:
    """One markdown table over several grid reports (``{factor: grid_report.json contents}``):
    per factor, (task, method) and point, the mean +- sd over seeds, the paired difference
    from that factor's default point, p_adj and the verdict."""
    lines = ["| factor | task / method | point | mean +- sd (n) | diff vs default | p_adj | verdict "
             "| trainable (% of base) | step (s) |",
             "|---|---|---|---|---:|---:|---|---:|---:|"]
    for factor, rep in reports.items():
        for cell, points in rep["results"].items():
            for slug, p in points.items():
                s = p["summary"]
                mean = (f"{s['mean']:.2f} (n=1)" if s.get("n") == 1 else
                        f"{s['mean']:.2f} +- {s['sd']:.2f} (n={s['n']})" if s.get("n") else "-")
                diff = "" if p.get("default") else (f"{p['difference']:+.2f}" if p.get("difference") is not None else "-")
                padj = "" if p.get("p_bonferroni") is None else f"{p['p_bonferroni']:.3g}"
                name = f"{slug} **(default)**" if p.get("default") else slug
                size, step = _cost(p.get("cost"))
                lines.append(f"| {factor} | {cell} | {name} | {mean} | {diff} | {padj} | {p.get('verdict', '')} "
                             f"| {size} | {step} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m lora_diffusion.report_grid SUMMARY.md REPORT_DIR...``: one table over the grid
    reports (``grid_report.json``) of several factors, each named by its folder."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m lora_diffusion.report_grid SUMMARY.md REPORT_DIR...", file=sys.stderr)
        return 2
    found = {Path(d).name: Path(d) / "grid_report.json" for d in args[1:]}
    reports = {name: json.loads(path.read_text()) for name, path in found.items() if path.is_file()}
    text = ["# Ablations: every factor beside its default", "",
            "Each factor's own report (`<factor>/report.md`) holds its command, grid and figures. Scores: the "
            "primary metric on the reported split (%), final checkpoint; differences paired over seeds, "
            f"Bonferroni within a factor; '{NOISE}' when p_adj >= {ALPHA}.", "", *summary_table(reports)]
    missing = sorted(set(found) - set(reports))
    if missing:
        text += ["", f"Not measured yet: {', '.join(missing)}."]
    atomic_write_text(Path(args[0]), "\n".join(text) + "\n")
    print(f"written: {args[0]} ({len(reports)} factors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
