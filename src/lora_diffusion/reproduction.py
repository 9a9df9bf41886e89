"""Reproduction check: do re-runs of a study's cells reproduce earlier records of the same cells?

A record made before runs stored their base's digest (``base_weights``) cannot say which base it
was made on. Re-running some of its cells on a known base answers that empirically: where the
re-run gives the same predictions on the same evaluation rows, the earlier record was made on
weights equal to the known base's (up to floating-point noise), because any other base (a
rebuild diverges within a few pretraining steps) changes the fine-tuning losses from the first
logged step on.

For each cell ``<task>/<method>/seed-<n>`` present in both study directories, compares:

- the primary metric (the same ``report_tasks.primary`` figure the reports quote);
- the first logged training loss (step of the earliest history entry), relative difference;
- the predictions file row by row (``id`` -> ``prediction``): the fraction identical.

``python -m lora_diffusion.reproduction NEW_RUNS OLD_RUNS OUT.md`` writes the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .report_tasks import primary
from .utils.io import atomic_write_text


def _predictions(run: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(run.glob("predictions_*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out[f"{path.stem}:{row.get('id')}"] = row.get("prediction")
    return out


def _first_loss(run: Path) -> tuple[int, float] | None:
    path = run / "training_history.json"
    if not path.is_file():
        return None
    rows = [r for r in json.loads(path.read_text()) if "loss" in r and "step" in r]  # the trainer's list
    return (int(rows[0]["step"]), float(rows[0]["loss"])) if rows else None


def compare_runs(new: str | Path, old: str | Path) -> dict[str, Any]:
    """One cell: ``{metric_new, metric_old, loss_step, loss_rel_diff, rows, identical}``."""
    new, old = Path(new), Path(old)
    rn, ro = (json.loads((d / "result.json").read_text()) for d in (new, old))
    pn, po = _predictions(new), _predictions(old)
    common = sorted(set(pn) & set(po))
    ln, lo = _first_loss(new), _first_loss(old)
    rel = None
    if ln and lo and ln[0] == lo[0]:
        rel = abs(ln[1] - lo[1]) / max(abs(lo[1]), 1e-12)
    return {"metric_new": primary(rn), "metric_old": primary(ro), "primary": (rn.get("dev") or {}).get("primary"),
            "loss_step": ln[0] if ln else None, "loss_rel_diff": rel, "rows": len(common),
            "identical": sum(pn[k] == po[k] for k in common) / len(common) if common else None}


def cells(root: str | Path) -> dict[str, Path]:
    """``task/method/seed-n`` -> run directory, for every finished run under a many-task study."""
    root = Path(root)
    return {str(p.parent.relative_to(root)): p.parent for p in sorted(root.glob("*/*/seed-*/result.json"))}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def reproduction_table(new_root: str | Path, old_root: str | Path) -> list[str]:
    new, old = cells(new_root), cells(old_root)
    both = sorted(set(new) & set(old))
    lines = ["| cell | metric | earlier | re-run | first logged loss, rel. diff. (step) | identical predictions |",
             "|---|---|---:|---:|---:|---:|"]
    for key in both:
        c = compare_runs(new[key], old[key])
        loss = "-" if c["loss_rel_diff"] is None else f"{c['loss_rel_diff']:.1e} ({c['loss_step']})"
        ident = "-" if c["identical"] is None else f"{100 * c['identical']:.1f}% of {c['rows']}"
        lines.append(f"| {key} | {c['primary']} | {_fmt(c['metric_old'])} | {_fmt(c['metric_new'])} | {loss} | {ident} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lora_diffusion.reproduction",
                                description="re-runs of a study's cells against earlier records of them")
    p.add_argument("new_runs")
    p.add_argument("old_runs")
    p.add_argument("out")
    args = p.parse_args(argv)
    lines = reproduction_table(args.new_runs, args.old_runs)
    text = ["# Reproduction check", "", f"Re-runs: `{args.new_runs}`; earlier records: `{args.old_runs}`", "",
            *lines, ""]
    print(atomic_write_text(Path(args.out), "\n".join(text)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
