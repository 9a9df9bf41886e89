"""``study`` and ``report``: methods x seeds, and their tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError, load_config, load_yaml
from .common import add_common, flag_overrides, load_pairs


def _study_parser(sub) -> None:
    p = sub.add_parser("study", help="methods x seeds on one task or many (idempotent, resumable)")
    add_common(p)
    p.add_argument("--base")
    p.add_argument("--task")
    p.add_argument("--tasks", help="comma-separated tasks: a many-task study (<output>/<task>/<method>/seed-<n>)")
    p.add_argument("--data-dir", help="one task: its folder")
    p.add_argument("--data-root", help="where the task folders live (default ../shared/data)")
    p.add_argument("--methods", help="comma-separated registered methods")
    p.add_argument("--seeds", help="comma-separated seeds (default 42..51)")
    p.add_argument("--num-seeds", type=int, help="use the first N of the seeds")
    p.add_argument("--steps", type=int, dest="train.max_steps")
    p.add_argument("--output-dir")
    p.add_argument("--status", action="store_true", help="list every cell of the study and its state (done, running, "
                   "partial, failed, pending) from disk; trains nothing, takes no lock")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="run the study at every value of a dotted run field (repeatable: the cartesian product), "
                        "e.g. --grid method_options.lambda_rank=0,0.01 --grid 'method_options.ranks=[8,8,8],[64,32,8]'; "
                        "runs in <output>/<KEY=V>/<method>/seed-<n>/")


def split_values(text: str) -> list[str]:
    """Comma-separated values, commas inside brackets or quotes kept: ``[8,8],[4,4]``."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    out.append(cur)
    return [v.strip() for v in out]


def parse_grid(pairs: list[str]) -> dict[str, list]:
    """``["key=v1,v2", ...]`` -> {key: [v1, v2]} (each value read as YAML)."""
    import yaml

    from ..config import ConfigError

    grid: dict[str, list] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"--grid {pair!r}: expected KEY=V1,V2,...")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice")
        try:
            grid[key] = [load_yaml(v) for v in split_values(values)]
        except yaml.YAMLError:
            raise ConfigError(f"--grid {pair!r}: a value is not valid YAML") from None
        if any(v is None for v in grid[key]):
            raise ConfigError(f"--grid {pair!r}: an empty value")
    return grid


def _report_parser(sub) -> None:
    r = sub.add_parser("report", help="markdown tables and PNG figures of a study")
    r.add_argument("--study", required=True, help="the study's output directory")
    r.add_argument("--output", required=True, help="directory for report.md and figures")
    r.add_argument("--study-command", default="", help="the exact command of the study, recorded in the report")
    r.add_argument("--bench", default=None, help="quality studies: a bench.json whose side-by-side train-step "
                   "times give the step-time ratios")


METHOD_MAPS = ("method_lr", "method_options", "lr_grid")
TASK_MAPS = ("task_seeds", "task_overrides", "lr_search_overrides")


def _names(value) -> list[str]:
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)


def narrowed(path: str | None, overrides: dict) -> dict:
    """``--methods`` / ``--tasks`` run a subset of a config file's study: its per-method and
    per-task settings of the others are left out (the subset keeps its own settings), unless
    ``--set`` gives those mappings itself."""
    if path is None or not ({"methods", "tasks"} & overrides.keys()):
        return {}
    from ..config import read_yaml_mapping

    tree, out = read_yaml_mapping(Path(path)), {}
    for names, maps in (("methods", METHOD_MAPS), ("tasks", TASK_MAPS)):
        if names not in overrides:
            continue
        keep = set(_names(overrides[names]))
        for key in maps:
            if isinstance(tree.get(key), dict) and key not in overrides:
                out[key] = {k: v for k, v in tree[key].items() if k in keep}
    return out


def cmd_study(args: argparse.Namespace) -> int:
    from ..study import StudyConfig, run_study

    overrides = load_pairs(args.overrides)
    overrides.update(flag_overrides(args, {
        "base": "base", "task": "task", "tasks": "tasks", "data_dir": "data_dir", "data_root": "data_root", "methods": "methods", "seeds": "seeds",
        "output_dir": "output_dir", "train.max_steps": "train.max_steps",
    }))
    overrides.update(narrowed(args.config, overrides))
    if args.grid:
        overrides["grid"] = parse_grid(args.grid)
    cfg = load_config(StudyConfig, args.config, overrides)
    if args.num_seeds:
        cfg.seeds = cfg.seeds[: args.num_seeds]
    if args.status:
        from ..study_status import status_lines, study_cells

        print("\n".join(status_lines(study_cells(cfg))))
        return 0
    results = run_study(cfg, progress=not args.quiet)
    print(f"{len(results)} runs complete under {cfg.output_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import write_report
    from ..report_grid import is_grid, write_grid_report
    from ..report_quality import is_quality, write_quality_report
    from ..report_tasks import is_free_text_study, is_multi_task, write_task_report
    from ..utils.io import check_writable_dir

    if not Path(args.study).is_dir():
        raise FileNotFoundError(f"--study {args.study}: no such study directory")
    check_writable_dir(args.output, "--output")
    writer = (write_grid_report if is_grid(args.study) else write_quality_report if is_quality(args.study)
              else write_task_report if is_multi_task(args.study) or is_free_text_study(args.study)
              else write_report)
    if args.bench is not None:
        if writer is not write_quality_report:
            raise ConfigError("--bench: only a quality study's report (one with lr-search/) reads a bench")
        if not Path(args.bench).is_file():
            raise FileNotFoundError(f"--bench {args.bench}: no such file")
        print(write_quality_report(args.study, args.output, args.study_command, bench=args.bench))
        return 0
    print(writer(args.study, args.output, args.study_command))
    return 0


COMMANDS = {
    "study": (_study_parser, cmd_study),
    "report": (_report_parser, cmd_report),
}
