"""The scaling report (issue #14 item 4): the gap to full fine-tuning as a function of base size.

Reads ``<runs>/L<n>/<method>/seed-<s>/result.json`` (one single-task study per base of n
layers, the same task and budget) and writes ``scaling.md`` and ``scaling.png``: per size the
base's parameter count, each method's primary metric on the reported split (mean +- sd over
seeds) and its gap to full fine-tuning in points (paired over the common seeds, mean +- sd).
Beside each size, the base's own quality: the NELBO perplexity bound on the pretraining corpus's
validation chunks, read from ``pretrain_summary.json`` in the base directory the runs record
(``-`` where a base has none, e.g. a hub checkpoint).

    python -m lora_diffusion.report_scaling RUNS OUT [--command "..."]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from .report import collect
from .report_tasks import _methods, _values, cell
from .stats import summarize
from .utils.io import atomic_write_text

REFERENCE = "full"


def collect_sizes(runs_dir: str | Path) -> dict[int, dict[str, dict[int, dict[str, Any]]]]:
    """{layers: {method: {seed: result}}} from the ``L<n>`` studies present."""
    out = {}
    for d in sorted(Path(runs_dir).glob("L*")):
        m = re.fullmatch(r"L(\d+)", d.name)
        if m and d.is_dir() and any(d.glob("*/seed-*/result.json")):
            out[int(m.group(1))] = collect(d)
    if not out:
        raise FileNotFoundError(f"no L<layers>/<method>/seed-*/result.json under {runs_dir}")
    return dict(sorted(out.items()))


def gaps(runs: dict[str, dict[int, dict[str, Any]]], method: str) -> list[float]:
    """Per common seed: method's primary metric minus full fine-tuning's (points)."""
    mine, ref = _values(runs.get(method, {})), _values(runs.get(REFERENCE, {}))
    return [mine[s] - ref[s] for s in sorted(set(mine) & set(ref))]


def base_bound(result: dict[str, Any]) -> str:
    """The base's NELBO perplexity bound after its pretraining, from the run's recorded base dir."""
    path = Path(str(result["config"].get("base", ""))) / "pretrain_summary.json"
    try:
        final = json.loads(path.read_text())["validation"]["final"]
    except (OSError, ValueError, KeyError, TypeError):
        return "-"
    return f"{final['ppl_bound']:.0f}"


def table(sizes) -> list[str]:
    methods = _methods({L: runs for L, runs in sizes.items()})
    others = [m for m in methods if m != REFERENCE]
    head = ["layers", "base parameters", "base ppl bound", *[f"{m}" for m in methods], *[f"{m} - full" for m in others]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for L, runs in sizes.items():
        first = next(iter(next(iter(runs.values())).values()))
        base = first["summary"]["accounting"]["base_parameters"]
        cells = [cell(list(_values(runs.get(m, {})).values())) for m in methods]
        for m in others:
            g = gaps(runs, m)
            s = summarize(g) if g else None
            cells.append("-" if s is None else f"{s['mean']:+.1f}" + (f" +- {s['sd']:.1f}" if s["n"] > 1 else ""))
        lines.append(f"| {L} | {base:,} | {base_bound(first)} | " + " | ".join(cells) + " |")
    return lines


def figure(sizes, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    others = [m for m in _methods(dict(sizes)) if m != REFERENCE]
    for m in others:
        xs, ys, es = [], [], []
        for L, runs in sizes.items():
            g = gaps(runs, m)
            if g:
                s = summarize(g)
                xs.append(L)
                ys.append(s["mean"])
                es.append(s["sd"] if s["n"] > 1 else 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("trunk layers")
    ax.set_ylabel("gap to full fine-tuning (points)")
    ax.set_xticks(list(sizes))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "scaling.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def write_scaling_report(runs_dir: str | Path, out_dir: str | Path, command: str = "") -> Path:
    sizes = collect_sizes(runs_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = figure(sizes, out)
    first = next(iter(next(iter(next(iter(sizes.values())).values())).values()))
    text = ["# Scaling: the gap to full fine-tuning by base size", "", f"Runs: `{runs_dir}`"]
    if command:
        text += ["", f"Command: `{command}`"]
    text += ["", f"Task `{first['config']['task']}`, {first['config']['train']['max_steps']} steps of batch "
             f"{first['config']['train']['batch_size']}; primary metric on the reported split, %, mean +- sd (n seeds); "
             "gaps paired over the common seeds; base ppl bound: each base's NELBO perplexity bound on its "
             "pretraining corpus's validation chunks (lower is a better LM).", "", *table(sizes), "", f"![gap by size]({fig.name})"]
    return atomic_write_text(out / "scaling.md", "\n".join(text) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lora_diffusion.report_scaling")
    p.add_argument("runs")
    p.add_argument("out")
    p.add_argument("--command", default="")
    args = p.parse_args(argv)
    print(write_scaling_report(args.runs, args.out, args.command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
