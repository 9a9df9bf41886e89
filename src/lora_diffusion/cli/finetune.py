"""``finetune``: one method on a registered task or on the user's own files."""

from __future__ import annotations

import argparse
import json
import sys

from ..config import load_config
from .common import add_common, flag_overrides, load_pairs


def add_data_file_flags(p: argparse.ArgumentParser, prefix: str = "data.") -> None:
    """Field names, template and bad-row policy of users' files (``DataFileConfig``)."""
    g = p.add_argument_group("users' files (JSONL, CSV or TSV)")
    g.add_argument("--prompt-field", dest=f"{prefix}prompt_field", metavar="NAME", help="default: prompt")
    g.add_argument("--response-field", dest=f"{prefix}response_field", metavar="NAME", help="default: response")
    g.add_argument("--template", dest=f"{prefix}template", metavar="TEXT",
                   help="prompt template over the record's fields, e.g. 'question: {question} answer:' "
                   "(generate --prompt: over {prompt})")
    g.add_argument("--skip-bad-rows", action="store_const", const=True, dest=f"{prefix}skip_bad_rows",
                   help="skip malformed rows (counted) instead of failing at the first")


def _finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune one registered method on a task or on your own data")
    add_common(p)
    p.add_argument("--method", help="a registered method (see `lora-diffusion methods`)")
    p.add_argument("--base", help="base diffusion LM directory (e.g. runs/pretrain/model), hub id or 'minilm'")
    p.add_argument("--task", help="a registered task (sst2, squad, gsm8k, xsum, ...; see README)")
    p.add_argument("--data-dir", help="the task's folder (default: --data-root/<the task's folder>)")
    p.add_argument("--data-root", help="where the task folders live (default ../shared/data)")
    p.add_argument("--data-file", help="your training file: JSONL, CSV or TSV with prompt/response fields")
    p.add_argument("--eval-file", help="your evaluation file, same layout")
    p.add_argument("--metric", help="metric for --data-file runs (default accuracy = exact match)")
    add_data_file_flags(p)
    p.add_argument("--output-dir")
    p.add_argument("--steps", type=int, dest="train.max_steps")
    p.add_argument("--lr", type=float, dest="train.lr")
    p.add_argument("--seed", type=int, dest="train.seed")
    m = p.add_argument_group("several tasks at once (method trajectory-composed; Eq. 23)")
    m.add_argument("--tasks", metavar="T,T,...", help="registered tasks trained together on mixed-task batches")
    m.add_argument("--data-files", metavar="F,F,...", help="your files, one task each (named by file name)")
    m.add_argument("--eval-files", metavar="F,F,...", help="an evaluation file per --data-files entry")
    m.add_argument("--router", action="store_true", help="train the router (Eq. 21) with the task modules")
    m.add_argument("--init-adapters", metavar="TASK=DIR,...", help="start task modules from saved trajectory adapters")
    m.add_argument("--freeze-adapters", action="store_true", help="train only the router (needs --router)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --output-dir (same configuration; a finished run is left as is)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in --output-dir (discarded once every input has been checked)")


FLAGS = {"method": "method", "task": "task", "base": "base", "data_dir": "data_dir", "data_root": "data_root",
         "data_file": "data_file", "eval_file": "eval_file", "metric": "metric", "output_dir": "output_dir",
         "train.max_steps": "train.max_steps", "train.lr": "train.lr", "train.seed": "train.seed"}


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..finetune import FinetuneConfig, run_finetune

    overrides = load_pairs(args.overrides)
    overrides.update(flag_overrides(args, FLAGS))
    overrides.update({k: v for k, v in vars(args).items() if k.startswith("data.") and v is not None})
    overrides.update(multitask_overrides(args, overrides))
    cfg = load_config(FinetuneConfig, args.config, overrides)
    result = run_finetune(cfg, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    if "config" not in result:  # a non-main DDP process
        return 0
    if "per_task" in result:
        print(json.dumps({"method": cfg.method, "tasks": list(result["tasks"]), "modes": result["modes"],
                          "per_task": {t: {m: r["metrics"] for m, r in modes.items()}
                                       for t, modes in result["per_task"].items()},
                          "router_accuracy": result["router_accuracy"],
                          "trainable_parameters": result["summary"]["accounting"]["trainable_parameters"],
                          "output_dir": cfg.output_dir}, indent=2))
        return 0
    if result.get("already_finished"):
        print(f"lora-diffusion finetune: {cfg.output_dir} is a finished run: nothing was trained or written; "
              "its recorded result:", file=sys.stderr)
    acc = result["summary"]["accounting"]
    dev = result["dev"] or {}
    print(json.dumps({"method": cfg.method, "task": result["task"]["name"], "eval_split": result["eval_split"],
                      "metrics": dev.get("metrics"), "generation_accuracy": dev.get("accuracy"),
                      "trainable_parameters": acc["trainable_parameters"],
                      "percent_of_base": round(acc["percent_of_base"], 3),
                      "bytes_on_disk": acc.get("bytes_on_disk"), "output_dir": cfg.output_dir}, indent=2))
    return 0


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def multitask_overrides(args: argparse.Namespace, overrides: dict) -> dict:
    """The multi-task flags as config overrides (--tasks / --data-files imply trajectory-composed)."""
    out: dict = {}
    for flag, key in (("tasks", "tasks"), ("data_files", "data_files"), ("eval_files", "eval_files")):
        if getattr(args, flag, None):
            out[key] = _split(getattr(args, flag))
    if (out.get("tasks") or out.get("data_files")) and "method" not in overrides:
        out["method"] = "trajectory-composed"
    if args.router:
        out.update({"method_options.router": True, "method_options.mode": "router"})
    if args.freeze_adapters:
        out["method_options.freeze_adapters"] = True
    if args.init_adapters:
        from ..composition import parse_adapters

        out["init_adapters"] = parse_adapters(args.init_adapters)
    return out


COMMANDS = {"finetune": (_finetune_parser, cmd_finetune)}
