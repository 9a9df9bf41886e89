"""``analyze-probe``: classifiers on the frozen base's features (what a frozen-trunk reader can reach)."""

from __future__ import annotations

import argparse


def _probe_parser(sub) -> None:
    p = sub.add_parser("analyze-probe", help="linear and MLP probes on the frozen base's features of a "
                       "classification task (the reach of a frozen-trunk reader)")
    p.add_argument("--task", required=True, help="a registered classification task (sst2, trec, ag_news, mrpc, ...)")
    p.add_argument("--base", required=True, help="the base directory or hub id")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--data-dir", default="", help="the task's folder (default: <data-root>/<task folder>)")
    p.add_argument("--validation-rows", type=int, default=1000,
                   help="rows carved from train (seeded) on which every choice is made (default 1000)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-train-rows", type=int, default=0, help="cap the training rows (default 0: all)")
    p.add_argument("--eval-rows", type=int, default=0, help="a seeded subset of the reported split (default 0: all)")
    p.add_argument("--no-mlp", action="store_true", help="only the logistic-regression probes")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace an existing probe.json")


def cmd_probe(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..probe import probe_markdown, run_probe

    for name in ("max_train_rows", "eval_rows"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 0, got {getattr(args, name)}")
    result = run_probe(args.task, args.base, args.data_root, args.output_dir, args.validation_rows, args.seed,
                       args.max_train_rows, args.eval_rows, mlp=not args.no_mlp, overwrite=args.overwrite,
                       data_dir=args.data_dir)
    print(probe_markdown(result))
    return 0


COMMANDS = {"analyze-probe": (_probe_parser, cmd_probe)}
