"""``evaluate``: a saved adapter (or a base) on a task split or a labelled file, no training."""

from __future__ import annotations

import argparse
import json

from ..config import load_config
from .common import add_common, add_sampling, flag_overrides, load_pairs, sampling_overrides
from .finetune import add_data_file_flags


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="a task's metrics for a saved adapter or a base, without training")
    add_common(p)
    p.add_argument("--adapter", help="adapter directory written by finetune")
    p.add_argument("--base", help="a base alone, or the adapter's base at another path")
    p.add_argument("--task", help="a registered task")
    p.add_argument("--split", help="the task's split (default: its reported split)")
    p.add_argument("--data-dir", help="the task's folder (default: --data-root/<the task's folder>)")
    p.add_argument("--data-root")
    p.add_argument("--data-file", help="a labelled JSONL / CSV / TSV file instead of a task")
    p.add_argument("--metric", help="metric for --data-file (default accuracy = exact match)")
    p.add_argument("--eval-rows", type=int, help="a fixed seeded sample of this many rows (default all)")
    p.add_argument("--output-dir", help="where metrics.json and predictions.jsonl go")
    p.add_argument("--overwrite", action="store_const", const=True, help="replace an earlier result there")
    add_data_file_flags(p)
    add_sampling(p)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate import EvaluateConfig, run_evaluate

    overrides = load_pairs(args.overrides)
    overrides.update(flag_overrides(args, {k: k for k in ("adapter", "base", "task", "split", "data_dir", "data_root",
                                                          "data_file", "metric", "eval_rows", "output_dir",
                                                          "overwrite")}))
    overrides.update({k: v for k, v in vars(args).items() if k.startswith("data.") and v is not None})
    overrides.update(sampling_overrides(args))
    cfg = load_config(EvaluateConfig, args.config, overrides)
    result = run_evaluate(cfg)
    summary = {"metric": result["metric"], "primary": result["primary"], "metrics": result["metrics"],
               "examples": result["examples"], "output_dir": cfg.output_dir}
    for key in ("accuracy", "head_accuracy"):
        if key in result:
            summary[f"generation_{key}" if key == "accuracy" else key] = result[key]
    print(json.dumps(summary, indent=2))
    return 0


COMMANDS = {"evaluate": (_evaluate_parser, cmd_evaluate)}
