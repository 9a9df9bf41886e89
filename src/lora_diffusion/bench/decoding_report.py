"""Targets, tables and the Pareto plot of the decoding study (``bench.decoding``), and the
aggregate report over several studies and the bench's decoding part (``reports/generation-speed.md``).

Targets of issue #16 item 4, per task and adapter:

- **passes**: at most R/4 trunk passes per sample (R = response tokens) with the task metric within
  1 point of the exact sampler's (metric >= exact - 1; metrics are in points, 0-100); the setting
  reported is the one with the fewest passes among those that qualify.
- **throughput**: among the settings within 1 point of the exact sampler, the largest throughput
  ratio (samples/s over the exact sampler's, medians of interleaved rounds on one batch) is at
  least 4x. The bench's ``decoding`` part times the settings whose passes do not depend on the
  model's confidence (fixed-K) at batch 32 on a synthetic batch, and trajectory vs frozen base.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PASS_FRACTION = 0.25  # trunk passes per sample <= R / 4
METRIC_POINTS = 1.0  # within 1 point of the exact sampler
SPEEDUP = 4.0
WEAK = 5.0  # an exact-sampler metric below this many points is flagged: "within 1 point" says little there
LOW_CONFIDENCE_NOTE = (
    "`low-confidence` runs with T = R (one reveal per step), so the model's t is read on a T = R grid, not "
    "the adapter's T (what `--steps R` does): a method whose perturbation depends on t (trajectory) then "
    "sees other phases than in training. `fixed-1` is the same one-token-per-call schedule with t on the "
    "adapter's own grid.")


def _qualifies(s: dict[str, Any]) -> bool:
    return s["delta"] >= -METRIC_POINTS


def study_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The two targets of one task / adapter from its settings' figures."""
    settings, budget = r["settings"], r["response_budget"]
    exact = settings["exact"]["value"]
    bound = PASS_FRACTION * budget
    others = {n: s for n, s in settings.items() if n != "exact"}
    ok = sorted((s["passes_per_sample"], -s["value"], n) for n, s in others.items()
                if s["passes_per_sample"] <= bound and _qualifies(s))
    out = []
    if ok:
        name = ok[0][2]
        s = settings[name]
        detail = (f"{name}: {s['passes_per_sample']:.2f} passes/sample (bound R/4 = {bound:.2f}), "
                  f"{r['primary']} {s['value']:.2f} vs exact {exact:.2f}")
    else:
        name = None
        fewest = min(others.items(), key=lambda kv: kv[1]["passes_per_sample"], default=None)
        close = [(s["passes_per_sample"], n) for n, s in others.items() if _qualifies(s)]
        detail = f"not met (bound R/4 = {bound:.2f}"
        if fewest:
            detail += (f"; fewest passes: {fewest[0]} {fewest[1]['passes_per_sample']:.2f} at "
                       f"{r['primary']} {fewest[1]['value']:.2f} vs exact {exact:.2f}")
        if close:
            detail += f"; fewest passes within 1 point: {min(close)[1]} {min(close)[0]:.2f}"
        detail += ")" + (" (R/4 < 1: one pass per sample is the least possible)" if bound < 1 else "")
    if abs(exact) < WEAK:
        detail += f" (the exact sampler scores {exact:.2f}: the quality bound says little)"
    out.append({"target": f"trunk passes <= R/4 with {r['primary']} within {METRIC_POINTS:g} point of exact",
                "met": name is not None, "setting": name, "value": settings[name]["passes_per_sample"] if name else None,
                "bound": bound, "detail": detail})
    fast = sorted(((s["timing"]["speedup"]["ratio"], n) for n, s in others.items() if _qualifies(s)), reverse=True)
    speed, fname = fast[0] if fast else (float("nan"), None)
    out.append({"target": f"throughput >= {SPEEDUP:g}x exact (batch {settings['exact']['timing']['batch']}, "
                          f"within {METRIC_POINTS:g} point)",
                "met": bool(fast) and speed >= SPEEDUP, "setting": fname, "value": speed, "bound": SPEEDUP,
                "detail": f"{fname}: {speed:.2f}x" if fname else "no setting within 1 point of exact"})
    return out


def _range(t: dict[str, Any]) -> str:
    b = t["batch"]
    return f"{1000 * t['median_s'] / b:.1f} [{1000 * t['min_s'] / b:.1f}, {1000 * t['max_s'] / b:.1f}]"


def _share(x: float | None) -> str:
    """A fraction as a percentage; "-" where a study recorded none (before the column existed)."""
    return "-" if x is None else f"{100 * x:.0f}%"


def study_table(r: dict[str, Any]) -> list[str]:
    head = (f"### {r['task']} / {r['method']} (`{r['adapter']}`)\n\n"
            f"{r['rows']} rows, batch {r['batch_size']}, R = {r['response_budget']} response tokens, "
            f"T = {r['num_steps']}, mean row length {r['mean_length']:.0f} tokens, prompt attention "
            f"{r['prompt_attention']}; metric {r['metric']} ({r['primary']}). Timed: "
            f"{r['settings']['exact']['timing']['runs']} interleaved rounds on a batch of "
            f"{r['settings']['exact']['timing']['batch']}.")
    lines = [head, "",
             "| setting | passes / sample | passes / R | calls / batch | query positions / sample | "
             "s / sample (metric run) | ms / sample, timed: median [min, max] | samples/s | x exact | "
             f"{r['primary']} | vs exact | = exact (text / tokens) | empty responses | [MASK] left |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in r["settings"].items():
        t = s["timing"]
        lines.append(f"| {name} | {s['passes_per_sample']:.2f} | {s['passes_over_R']:.3f} | {s['calls_per_batch']:.1f} | "
                     f"{s['positions_per_sample']:.0f} | {s['seconds_per_sample']:.3f} | {_range(t)} | "
                     f"{t['samples_per_s']:.2f} | {t['speedup']['ratio']:.2f}x | {s['value']:.2f} | "
                     f"{s['delta']:+.2f} | {s['agree_rows']:.3f} / {s['agree_tokens']:.3f} | "
                     f"{_share(s.get('empty_rows'))} | {s['mask_tokens']} |")
    lines.append("")
    for name, why in (r.get("skipped_settings") or {}).items():
        lines.append(f"- {name}: not run on this adapter ({why})")
    for t in r.get("targets") or study_targets(r):
        lines.append(f"- **{t['target']}**: {'met' if t['met'] else '**not met**'}; {t['detail']}")
    return lines + [""]


def _machine(result: dict[str, Any]) -> str:
    h = result["hardware"]
    device = h.get("gpu") or h.get("device") or "cpu"
    return (f"{h['platform']} ({h.get('processor') or 'cpu'}), {h['cpus']} CPUs, process CPUs "
            f"{h.get('affinity', 'not recorded')}, {h['torch_threads']} torch threads (OMP_NUM_THREADS="
            f"{h.get('omp_num_threads', 'not recorded')}), device {device}; commit `{result.get('git_commit')}`, "
            f"torch {(result.get('versions') or {}).get('torch')}")


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Decoding settings: trunk passes, time and quality", "",
             f"Command: `{result['command']}`", "", f"Machine: {_machine(result)}.",
             f"Beside it: {result.get('note') or 'not stated'}.", "",
             "Passes = trunk rows per sample (a forward hook on the trunk); the metric run is one generation "
             "over all rows (its wall time is indicative only); the timed figures are interleaved rounds on one "
             "batch. `= exact`: share of rows whose decoded response equals the exact sampler's / share of "
             "response tokens.", "", LOW_CONFIDENCE_NOTE, ""]
    for r in result["results"]:
        lines += study_table(r)
    return "\n".join(lines)


def pareto(results: list[dict[str, Any]], output: str | Path) -> Path:
    """Metric vs trunk passes per sample, one marker per setting, one panel per task / adapter."""
    from matplotlib.ticker import FormatStrFormatter

    from ..plots import _save, plt

    n = max(len(results), 1)
    cols = min(n, 3)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(5 * cols, 4 * math.ceil(n / cols)), dpi=110,
                             squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.axis("off")
    for ax, r in zip(axes.flat, results):
        exact = r["settings"]["exact"]["value"]
        for i, (name, s) in enumerate(r["settings"].items()):
            ax.scatter(s["passes_per_sample"], s["value"], marker="os^vD<>phX*"[i % 11], s=45, label=name, zorder=3)
        ax.axvline(PASS_FRACTION * r["response_budget"], color="grey", ls="--", lw=1, label="R/4")
        ax.axhline(exact - METRIC_POINTS, color="tab:red", ls=":", lw=1, label="exact - 1 point")
        ax.set_xscale("log")
        for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
            axis(FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="both", labelsize=7)
        ax.set_xlabel("trunk passes per sample")
        ax.set_ylabel(r["primary"])
        ax.set_title(f"{r['task']} / {r['method']} (R = {r['response_budget']})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, output)


def bench_section(bench: dict[str, Any]) -> list[str]:
    """The bench's decoding and latency parts and their targets."""
    d = bench.get("decoding")
    if not d:
        return ["The bench's decoding part was not found.", ""]
    from .report import _fmt, decoding_markdown, latency_markdown

    lines = [f"Machine: {_machine(bench)}.", f"Command: `lora-diffusion bench` with config `{bench['config']}`.", "",
             "| target | measured | bound | met |", "|---|---:|---:|---|"]
    for t in bench.get("targets", []):
        if t.get("part") in ("decoding", "latency"):
            lines.append(f"| {t['target']} | {_fmt(t['value'], t['unit'])} | {'>= ' if t.get('higher') else '<= '}"
                         f"{_fmt(t['bound'], t['unit'])} | {'yes' if t['met'] else '**no**'} |")
    return lines + decoding_markdown(bench) + (latency_markdown(bench) if bench.get("latency") else []) + [""]


def aggregate(dirs: list[str], output: str | Path, bench: str = "") -> Path:
    """``reports/generation-speed.md`` (and a Pareto PNG beside it) from study directories
    (each with ``decoding.json``) and optionally the bench's ``bench.json``."""
    from ..utils.io import atomic_write_text

    studies = [json.loads((Path(d) / "decoding.json").read_text()) for d in dirs if (Path(d) / "decoding.json").is_file()]
    missing = [d for d in dirs if not (Path(d) / "decoding.json").is_file()]
    results = [r for s in studies for r in s["results"]]
    output = Path(output)
    png = output.with_name(output.stem + "-pareto.png")
    lines = ["# Generation speed: parallel decoding and prompt caching against quality (issue #16)", "",
             "Produced by `python -m lora_diffusion.bench.decoding --aggregate ...` from the studies below.",
             *([f"Missing (not run yet): {', '.join(missing)}."] if missing else []), "",
             "## Targets", "", "| task | method | R | target | met | detail |", "|---|---|---:|---|---|---|"]
    for r in results:
        for t in r.get("targets") or study_targets(r):
            lines.append(f"| {r['task']} | {r['method']} | {r['response_budget']} | {t['target']} | "
                         f"{'yes' if t['met'] else '**no**'} | {t['detail']} |")
    if bench:
        b = json.loads(Path(bench).read_text())
        lines += ["", f"## Bench: decoding at batch {b['config'].get('decoding_batch')} (`{bench}`)", ""]
        lines += bench_section(b)
    lines += ["", "## Commands and machines", ""]
    for s in studies:
        sha = (s.get("base_weights") or {}).get("sha256")
        lines += [f"- `{s['command']}`", f"  - machine: {_machine(s)}", f"  - beside it: {s.get('note') or 'not stated'}",
                  f"  - base weights: {f'`{sha[:12]}`' if sha else 'not recorded (made before studies recorded it)'}"]
    if len({(s.get("base_weights") or {}).get("sha256") for s in studies}) > 1:
        lines += ["", "The studies were made on more than one base (above): every ratio and difference is "
                  "between settings of one study, on one adapter and its base."]
    lines += ["", f"## Figures per task and adapter (Pareto plot: `{png.name}`)", ""]
    for r in results:
        lines += study_table(r)
    if results:
        pareto(results, png)
    return atomic_write_text(output, "\n".join(lines) + "\n")
