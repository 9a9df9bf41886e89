"""``compose``: several saved adapters -> one composed adapter (superposition or a merge)."""

from __future__ import annotations

import argparse


def _compose_parser(sub) -> None:
    p = sub.add_parser("compose", help="compose saved adapters into one (router / uniform / weights / merges)")
    p.add_argument("--adapters", required=True, metavar="NAME=DIR,...",
                   help="task adapters by name, e.g. sst2=runs/sst2/adapter,trec=runs/trec/adapter")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--weights", metavar="W,...", help="user weights, one per adapter (superposition; or the merge's)")
    g.add_argument("--router", metavar="DIR", help="a trajectory-composed adapter trained with a router over these tasks")
    p.add_argument("--mode", help="uniform (default), weights, router, oracle, merge-average, merge-linear, merge-cat, "
                   "merge-ties, merge-dare_linear, merge-dare_ties, merge-svd (default: weights with --weights, "
                   "router with --router, else uniform)")
    p.add_argument("--density", type=float, help="kept fraction for ties / dare merges")
    p.add_argument("--seed", type=int, default=0, help="seed of DARE's random drop (default 0)")
    p.add_argument("--base", help="the adapters' base at another path (default: the one they record)")
    p.add_argument("--output", required=True, metavar="DIR", help="directory of the composed adapter")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")


def cmd_compose(args: argparse.Namespace) -> int:
    from ..composition import compose, describe, parse_adapters, parse_weights

    weights = parse_weights(args.weights) if args.weights else None
    mode = args.mode or ("weights" if weights is not None else "router" if args.router else "uniform")
    if args.router and mode != "router":
        from ..config import ConfigError

        raise ConfigError(f"--router goes with mode router, not {mode!r}", field="router")
    record = compose(parse_adapters(args.adapters), args.output, mode, weights, args.router or "", args.base or "",
                     args.density, args.seed, args.overwrite)
    print(describe({**record, "output": args.output}))
    return 0


COMMANDS = {"compose": (_compose_parser, cmd_compose)}
