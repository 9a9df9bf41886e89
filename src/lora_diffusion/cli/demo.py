"""``demo``: the main job on embedded defaults."""

from __future__ import annotations

import argparse

from ..config import ConfigError
from .common import load_pairs


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job on embedded defaults (no network, no ../shared)")
    p.add_argument("--base", default=None, help="base diffusion LM (default: the cached base)")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N dev rows (0 = all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="method_options.KEY=VALUE",
                   help="override a trajectory option, e.g. --set method_options.ranks=[32,32,32]")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    options = {}
    for key, value in load_pairs(args.overrides).items():
        if not key.startswith("method_options."):
            raise ConfigError(f"{key}: the demo only takes method_options.* overrides")
        options[key.split(".", 1)[1]] = value
    run_demo(base=args.base, output_dir=args.output_dir, steps=args.steps, seed=args.seed,
             eval_limit=args.eval_limit, method_options=options)
    return 0


COMMANDS = {
    "demo": (_demo_parser, cmd_demo),
}
