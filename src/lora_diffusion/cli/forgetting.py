"""``forgetting``: perplexity bound and masked-token accuracy of a base or an adapter on plain text."""

from __future__ import annotations

import argparse

from ..config import load_config
from .common import flag_overrides


def _forgetting_parser(sub) -> None:
    p = sub.add_parser("forgetting", help="NELBO perplexity bound and masked-token accuracy on plain text "
                       "(catastrophic forgetting) of a base or of a saved adapter of any method")
    p.add_argument("--adapter", help="a saved adapter directory (the method is active)")
    p.add_argument("--base", help="the base (alone, or the adapter's base; default: the one it records)")
    p.add_argument("--corpus", action="append", dest="corpora", metavar="PATH",
                   help="text file, WikiText-style directory or CSV (repeatable)")
    p.add_argument("--split", help="split of each corpus (default test; 'all' = the whole of a single file)")
    p.add_argument("--csv-column", help="column of a .csv corpus (default abstract)")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--max-chunks", type=int, help="0 = every chunk")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--instruction", choices=["empty", "template"],
                   help="empty (no instruction tokens, default) or template (the adapter's task template, "
                        "fields emptied, as a clean prefix)")
    p.add_argument("--template", help="the template for --instruction template (default: the adapter's)")
    p.add_argument("--with-base", action="store_true", default=None,
                   help="also measure the adapter's base on the same rows; report the change")
    p.add_argument("--base-result", help="a base's forgetting.json to report the change against")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--overwrite", action="store_true", default=None)


def cmd_forgetting(args: argparse.Namespace) -> int:
    from ..forgetting import ForgettingConfig, run_forgetting, table

    names = ("adapter", "base", "corpora", "split", "csv_column", "seq_len", "max_chunks", "batch_size", "seed",
             "instruction", "template", "with_base", "base_result", "output_dir", "overwrite")
    cfg = load_config(ForgettingConfig, None, flag_overrides(args, {n: n for n in names}))
    result = run_forgetting(cfg)
    print("\n".join(table(result)))
    print(f"written: {cfg.output_dir}/forgetting.json")
    return 0


def _table_parser(sub) -> None:
    p = sub.add_parser("forgetting-table", help="one markdown table over several forgetting.json results")
    p.add_argument("--result", action="append", required=True, metavar="PATH",
                   help="a forgetting.json (or its directory) holding base figures (repeatable)")
    p.add_argument("--output", required=True, help="the markdown file to write")
    p.add_argument("--title", default="")


def cmd_forgetting_table(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..forgetting import RESULT_FILE, combined_table
    from ..utils.io import atomic_write_text, check_writable_file, read_json

    check_writable_file(args.output, "--output")
    paths = [str(Path(p) / RESULT_FILE) if Path(p).is_dir() else p for p in args.result]
    results = [read_json(p, what="--result") for p in paths]
    lines = ([f"# {args.title}", ""] if args.title else []) + combined_table(results, paths)
    lines += ["", "Sources: " + ", ".join(f"`{p}`" for p in paths)]
    print(atomic_write_text(args.output, "\n".join(lines) + "\n"))
    return 0


COMMANDS = {"forgetting": (_forgetting_parser, cmd_forgetting),
            "forgetting-table": (_table_parser, cmd_forgetting_table)}
