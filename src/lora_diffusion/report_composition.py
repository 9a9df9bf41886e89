"""The composition study's report (issue #12, items 4-6), from what ``reports/composition/run.sh`` writes.

    python -m lora_diffusion.report_composition RUNS OUT      # writes OUT/report.md and OUT/zero_shot.png

``RUNS`` (default layout of ``run.sh``):

- ``single/<part>_text/<method>/result.json``: single-task adapters (trajectory, lora, adapter),
  scored on their own task's reported split (``dev``);
- ``joint/result.json``: task modules trained jointly with the router; ``router/result.json``:
  the router alone over the frozen single-task trajectory adapters (each with ``per_task[task][mode]``,
  modes router / uniform / oracle, and ``router_accuracy[task]``, a fraction);
- ``zeroshot/<composite>/<column>/eval/{metrics.json, predictions.jsonl}``: ``evaluate`` of each
  composed / merged / single / upper-bound adapter on each zero-shot composite task;
- ``serving/serving_cost.json``: ``python -m lora_diffusion.bench.composition``;
- ``command.txt``: the exact ``run.sh`` invocation.

Every cell is read where it exists and is ``-`` where it does not: the report is regenerated
while the study runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .data.composite import PARTS, part_accuracy_file
from .utils.io import atomic_write_text

COMPOSITES = tuple(PARTS)
TEXT_TASKS = ("sst2_text", "trec_text", "ag_news_text")
# zero-shot columns: (directory under zeroshot/<composite>/, header), in three groups of one table each
SUPERPOSITION = (("uniform", "uniform"), ("weights-1-1", "weights 1,1"), ("router-pair", "router (pair)"),
                 ("router-3", "router (3 tasks)"), ("joint-router", "joint + router"))
MERGES = (("trajectory-merge-average", "trajectory average"), ("lora-merge-linear", "LoRA linear"),
          ("lora-merge-cat", "LoRA cat"), ("lora-merge-ties", "LoRA TIES"),
          ("lora-merge-dare_linear", "LoRA DARE linear"), ("lora-merge-dare_ties", "LoRA DARE TIES"),
          ("adapter-merge-average", "adapter average"))
ALONE = tuple((f"{which}-alone-{m}", f"{label} alone ({m})") for m in ("trajectory", "lora", "adapter")
              for which, label in (("first", "A"), ("second", "B")))
UPPER = (("upper-full", "upper: full FT"), ("upper-trajectory", "upper: trajectory"))
ZERO_SHOT_GROUPS = (("Superposition of the two trajectory adapters (one trunk pass per step)", SUPERPOSITION),
                    ("Parameter-space merges (baselines)", MERGES),
                    ("Single-task adapters alone, and the upper bound trained on the composite itself",
                     (*ALONE, *UPPER)))
ZERO_SHOT_COLUMNS = tuple(c for _, group in ZERO_SHOT_GROUPS for c in group)
# multi-task columns: (header, how to read the value)
MULTI_TASK_COLUMNS = (("single trajectory", ("single", "trajectory")), ("single LoRA", ("single", "lora")),
                      ("single adapter", ("single", "adapter")), ("joint + router", ("joint", "router")),
                      ("joint uniform", ("joint", "uniform")), ("joint oracle", ("joint", "oracle")),
                      ("router accuracy (joint)", ("joint", "router_accuracy")),
                      ("frozen + router", ("router", "router")), ("frozen uniform", ("router", "uniform")),
                      ("router accuracy (frozen)", ("router", "router_accuracy")))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def zero_shot_cell(runs: Path, composite: str, column: str) -> dict[str, float] | None:
    """{"both", "first", "second", "first_any", "second_any", "words", "rows"} of one evaluation
    (percent; words: mean predicted words per answer), or None when it is missing."""
    folder = Path(runs) / "zeroshot" / composite / column / "eval"
    metrics = read_json(folder / "metrics.json")
    if metrics is None:
        return None
    cell = {"both": float(metrics["metrics"]["accuracy"]), "first": None, "second": None, "first_any": None,
            "second_any": None, "words": None, "rows": metrics.get("examples")}
    if (folder / "predictions.jsonl").is_file():
        cell.update(part_accuracy_file(folder / "predictions.jsonl"))
    return cell


def zero_shot(runs: Path) -> dict[str, dict[str, dict[str, float] | None]]:
    return {c: {key: zero_shot_cell(runs, c, key) for key, _ in ZERO_SHOT_COLUMNS} for c in COMPOSITES}


def _dev_accuracy(result: dict[str, Any] | None) -> float | None:
    dev = (result or {}).get("dev") or {}
    value = (dev.get("metrics") or {}).get("accuracy")
    return None if value is None else float(value)


def multi_task(runs: Path) -> dict[str, dict[str, float | None]]:
    """{task: {header: percent}}: single-task adapters, the joint model per mode, the frozen-adapter router."""
    runs = Path(runs)
    multi = {name: read_json(runs / name / "result.json") for name in ("joint", "router")}
    out: dict[str, dict[str, float | None]] = {}
    for task in TEXT_TASKS:
        row: dict[str, float | None] = {}
        for header, (source, key) in MULTI_TASK_COLUMNS:
            if source == "single":
                row[header] = _dev_accuracy(read_json(runs / "single" / task / key / "result.json"))
                continue
            result = multi[source] or {}
            if key == "router_accuracy":
                value = (result.get("router_accuracy") or {}).get(task)
                row[header] = None if value is None else 100.0 * float(value)
            else:
                scored = ((result.get("per_task") or {}).get(task) or {}).get(key) or {}
                value = (scored.get("metrics") or {}).get("accuracy")
                row[header] = None if value is None else float(value)
        out[task] = row
    return out


def zero_shot_tables(cells: dict[str, dict[str, dict[str, float] | None]]) -> str:
    """One table per column group; rows: composite tasks; cells: both words (first / second word)."""
    blocks = []
    for title, group in ZERO_SHOT_GROUPS:
        lines = [f"**{title}**", "", "| composite | " + " | ".join(label for _, label in group) + " |",
                 "|---|" + "---:|" * len(group)]
        for composite in COMPOSITES:
            row = []
            for key, _ in group:
                c = cells[composite][key]
                row.append("-" if c is None else f"{fmt(c['both'])} ({fmt(c['first'])} / {fmt(c['second'])})")
            lines.append(f"| {composite} | " + " | ".join(row) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def order_free_table(cells: dict[str, dict[str, dict[str, float] | None]]) -> str:
    """Rows: every zero-shot column; per composite: A's gold word anywhere in the answer / B's /
    mean words per answer (which task a model answers, whatever the order)."""
    lines = ["| model | " + " | ".join(COMPOSITES) + " |", "|---|" + "---:|" * len(COMPOSITES)]
    for key, label in ZERO_SHOT_COLUMNS:
        row = []
        for composite in COMPOSITES:
            c = cells[composite][key]
            row.append("-" if c is None or c.get("words") is None else
                       f"{fmt(c['first_any'])} / {fmt(c['second_any'])} / {fmt(c['words'], 2)}")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def best_of(cells: dict[str, dict[str, float] | None], group) -> tuple[str, float] | None:
    found = [(label, cells[key]["both"]) for key, label in group if cells.get(key) is not None]
    return max(found, key=lambda x: x[1]) if found else None


def comparison_table(cells: dict[str, dict[str, dict[str, float] | None]]) -> str:
    """Per composite: the best superposition mode beside the best merge and the upper bounds."""
    lines = ["| composite | best superposition | best merge | superposition - merge | upper: full FT | "
             "upper: trajectory |", "|---|---|---|---:|---:|---:|"]
    for composite in COMPOSITES:
        sup, mer = best_of(cells[composite], SUPERPOSITION), best_of(cells[composite], MERGES)
        diff = fmt(sup[1] - mer[1]) if sup and mer else "-"
        ups = [fmt((cells[composite][k] or {}).get("both")) for k, _ in UPPER]
        lines.append(f"| {composite} | {f'{sup[0]}: {fmt(sup[1])}' if sup else '-'} | "
                     f"{f'{mer[0]}: {fmt(mer[1])}' if mer else '-'} | {diff} | {ups[0]} | {ups[1]} |")
    return "\n".join(lines)


def multi_task_table(rows: dict[str, dict[str, float | None]]) -> str:
    headers = [h for h, _ in MULTI_TASK_COLUMNS]
    lines = ["| task | " + " | ".join(headers) + " |", "|---|" + "---:|" * len(headers)]
    for task, row in rows.items():
        lines.append(f"| {task} | " + " | ".join(fmt(row[h]) for h in headers) + " |")
    return "\n".join(lines)


def serving_table(bench: dict[str, Any] | None) -> str:
    if not bench:
        return "Not measured yet (`runs/serving/serving_cost.json` is missing)."
    cfg = bench.get("config", {})
    lines = [f"Generation batch of {cfg.get('batch', '-')} rows x {cfg.get('length', '-')} tokens "
             f"({cfg.get('prompt', '-')} prompt), T = {cfg.get('num_steps', '-')}, median of "
             f"{cfg.get('rounds', '-')} interleaved rounds, {bench.get('threads', '-')} torch threads.", "",
             "| M | composed (s / batch) | M separate runs (s / batch) | separate / composed | "
             "trunk calls composed | trunk calls separate |", "|---:|---:|---:|---:|---:|---:|"]
    for m, r in sorted(bench.get("results", {}).items(), key=lambda kv: int(kv[0])):
        times, passes = r.get("times", {}), r.get("trunk_passes", {})
        lines.append(f"| {m} | {fmt((times.get('composed') or {}).get('median_s'), 3)} | "
                     f"{fmt((times.get('separate') or {}).get('median_s'), 3)} | "
                     f"{fmt(r.get('ratio_separate_over_composed'), 2)} | "
                     f"{(passes.get('composed') or {}).get('calls', '-')} | "
                     f"{(passes.get('separate') or {}).get('calls', '-')} |")
    return "\n".join(lines)


def result_files(runs: Path) -> list[Path]:
    runs = Path(runs)
    found = [*runs.rglob("result.json"), *runs.rglob("metrics.json"), runs / "serving" / "serving_cost.json"]
    return sorted(p for p in found if p.is_file() and "checkpoints" not in p.parts)


def provenance_section(runs: Path) -> str:
    """Git commits, library versions and machines recorded by every result file."""
    commits: dict[str, int] = {}
    versions: dict[str, set[str]] = {}
    machines: set[str] = set()
    files = result_files(runs)
    for path in files:
        data = read_json(path) or {}
        commit = data.get("git_commit") or "unrecorded"
        commits[commit] = commits.get(commit, 0) + 1
        for name, version in (data.get("versions") or {}).items():
            versions.setdefault(name, set()).add(str(version))
        machine = data.get("machine") or {}
        if machine:
            machines.add(f"{machine.get('platform')}, {machine.get('torch_threads')} torch threads"
                         + (f", {machine['cuda']}" if machine.get("cuda") else ""))
    if not files:
        return "No result file yet."
    lines = [f"{len(files)} result files.", "", "- git commit: " + "; ".join(
        f"`{c}` ({n} files)" for c, n in sorted(commits.items(), key=lambda kv: -kv[1]))]
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {' / '.join(sorted(v))}" for k, v in sorted(versions.items())))
    if machines:
        lines.append("- machines: " + "; ".join(sorted(machines)))
    return "\n".join(lines)


def chart(cells: dict[str, dict[str, dict[str, float] | None]], path: Path) -> bool:
    """Grouped bars of the zero-shot table (both words exact, percent); False when nothing is measured."""
    present = [(key, label) for key, label in ZERO_SHOT_COLUMNS if any(cells[c][key] for c in COMPOSITES)]
    if not present:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(present) * len(COMPOSITES) / 2), 4.8))
    width = 0.8 / len(COMPOSITES)
    for k, composite in enumerate(COMPOSITES):
        xs = [i + (k - (len(COMPOSITES) - 1) / 2) * width for i in range(len(present))]
        ys = [(cells[composite][key] or {}).get("both") or 0.0 for key, _ in present]
        ax.bar(xs, ys, width, label=composite)
    ax.set_xticks(range(len(present)), [label for _, label in present], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("exact match of both words (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Zero-shot composite tasks: composition modes, merges, single adapters, upper bounds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def render(runs: str | Path, out: str | Path) -> str:
    runs, out = Path(runs), Path(out)
    cells = zero_shot(runs)
    command_file = runs / "command.txt"
    command = command_file.read_text(encoding="utf-8").strip() if command_file.is_file() else "-"
    figure = chart(cells, out / "zero_shot.png")
    text = f"""# Composition study (issue #12): router, superposition, merges, zero-shot composite tasks

Generated by `python -m lora_diffusion.report_composition {runs} {out}` from the result files
under `{runs}`; a `-` is a run not finished (or not started) yet.

## Commands

```bash
{command}
```

`reports/composition/run.sh` runs every step below (seed 42, batch 16, the given steps; learning
rates: trajectory 1e-3, LoRA 5e-4, adapter 5e-4, full fine-tuning 5e-5), then this report.

## Zero-shot composite tasks

Never trained on: the prompt is the two tasks' instructions, the answer their two label words
(`data/composite.py`). Cells: exact match of both words, in parentheses the first word's and the
second word's accuracy (`part_accuracy_file`), percent. A and B are the composite's first and
second task (`sst2_trec`: A = SST-2, B = TREC). The composed adapters are the single-task
adapters trained on `sst2_text`, `trec_text`, `ag_news_text` (each task alone, in the
composite tasks' 4-token layout). `router (pair)`: a router trained alone over the pair's frozen
trajectory adapters (`compose --router` needs a router over exactly the composed adapters);
`router (3 tasks)`: the router trained over all three frozen adapters, all three composed;
`joint + router`: the modules trained jointly with the router. **Oracle is not applicable**: a
composite row belongs to both tasks, and oracle routes each row to one task's modules.

{zero_shot_tables(cells)}

Order-free: whether A's gold word is anywhere in the answer / B's / the mean number of words
per answer (the three tasks' label words are disjoint, so a word names its task). It tells a
model that answers one of the two tasks, or both in the other order, from one that answers neither:

{order_free_table(cells)}

Best superposition mode against the best parameter-space merge (both words exact):

{comparison_table(cells)}

{"![zero-shot accuracy](zero_shot.png)" if figure else "(no figure yet: nothing measured)"}

## Multi-task table

Each task's reported split (SST-2 dev, TREC test, AG News test; `*_text` layout), generation
accuracy (exact match of the label word, percent). `joint`: trajectory modules trained jointly
with the router on mixed-task batches (Eq. 23) under the router, uniform weights (1/M) and the
oracle (each row its own task's modules); `frozen`: the router trained alone over the frozen
single-task trajectory adapters. Router accuracy: argmax w is the row's task, at t = T.

{multi_task_table(multi_task(runs))}

## Serving cost: M adapters composed against M separate runs

{serving_table(read_json(runs / "serving" / "serving_cost.json"))}

## Provenance

{provenance_section(runs)}
"""
    return text


def write_report(runs: str | Path, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out / "report.md", render(runs, out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", help="the study's runs folder (reports/composition/runs)")
    p.add_argument("out", help="where report.md and zero_shot.png go (reports/composition)")
    args = p.parse_args(argv)
    print(write_report(args.runs, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
