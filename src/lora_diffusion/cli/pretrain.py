"""``pretrain`` and ``eval-base``: make and measure a base diffusion LM."""

from __future__ import annotations

import argparse
import json
import sys

from ..config import ConfigError, PretrainConfig, load_config
from .common import add_common, flag_overrides, load_pairs


def _pretrain_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="train an encoder into a base masked-diffusion LM")
    add_common(p)
    p.add_argument("--base", help="hub id, local model directory, or 'minilm' (default)")
    p.add_argument("--corpus", action="append", help="text file, directory with train/valid/test.txt, .csv, or HF "
                   "dataset id; repeat it to pretrain on several corpora, pooled")
    p.add_argument("--csv-column", help="the text column of a .csv corpus (default text)")
    p.add_argument("--output-dir")
    p.add_argument("--steps", type=int, dest="train.max_steps")
    p.add_argument("--seed", type=int, dest="train.seed")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint (same configuration)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in --output-dir (discarded once every input has been checked)")
    p.add_argument("--cache", metavar="NAME", help="also install the trained base in the cache as "
                   "bases/NAME (the demo uses 'minilm-wt2' when present)")


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval-base", help="ELBO perplexity bound and masked-token accuracy of a base")
    p.add_argument("--base", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--max-chunks", type=int, default=0, help="0 = the whole split")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="write the figures as JSON here")


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..pretrain import run_pretrain

    overrides = load_pairs(args.overrides)
    overrides.update(flag_overrides(args, {
        "base": "base", "corpus": "corpus", "csv_column": "csv_column", "output_dir": "output_dir",
        "train.max_steps": "train.max_steps", "train.seed": "train.seed",
    }))
    cfg = load_config(PretrainConfig, args.config, overrides)
    if args.cache:
        from ..paths import check_cache_name, default_cache_dir
        from ..utils.io import check_writable_dir

        check_cache_name(args.cache)
        check_writable_dir(default_cache_dir() / "bases", "--cache (the cache directory)")
    result = run_pretrain(cfg, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    if result.get("already_finished"):
        print(f"lora-diffusion pretrain: {cfg.output_dir} is a finished run: nothing was trained or written",
              file=sys.stderr)
    if args.cache:
        from ..paths import cached_base

        print(f"installed in the cache: {cached_base(args.cache, install_from=result['saved_to'])}")
    print(json.dumps({k: result[k] for k in ("steps", "wall_time_s", "saved_to")}, indent=2))
    print(json.dumps(result["validation"], indent=2, default=str))
    return 0


def cmd_eval_base(args: argparse.Namespace) -> int:
    from ..data.corpus import chunk_corpus, read_corpus
    from ..evaluation import evaluate_base
    from ..hub import load_base
    from ..utils.io import atomic_write_json, check_writable_file

    if args.output:
        check_writable_file(args.output, "--output")
    for name in ("seq_len", "batch_size"):
        if getattr(args, name) < (8 if name == "seq_len" else 1):
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= {8 if name == 'seq_len' else 1}, "
                              f"got {getattr(args, name)}")
    if args.max_chunks < 0:
        raise ConfigError(f"--max-chunks: must be >= 0, got {args.max_chunks}")
    lines = read_corpus(args.corpus, args.split)
    model = load_base(args.base)
    data = chunk_corpus(lines, model.tokenizer, args.seq_len, args.max_chunks)
    result = {"base": args.base, "corpus": args.corpus, "split": args.split, "chunks": len(data),
              **evaluate_base(model, data, model.diffusion, batch_size=args.batch_size, seed=args.seed)}
    print(json.dumps(result, indent=2))
    if args.output:
        atomic_write_json(args.output, result)
    return 0


COMMANDS = {
    "pretrain": (_pretrain_parser, cmd_pretrain),
    "eval-base": (_eval_parser, cmd_eval_base),
}
