"""Command-line interface: ``lora-diffusion <command>``, one module per group of commands.

Every command reads its typed config (defaults <- ``--config file.yaml`` <- ``--set a.b=v``
overrides <- the explicit flags) and fails at load, naming the field, on a bad value; a
user's mistake is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import ConfigError
from . import demo, evaluate, finetune, generate, pretrain, study, tools

MODULES = (pretrain, demo, finetune, generate, evaluate, study, tools)


def commands() -> dict:
    out = {}
    for module in MODULES:
        out.update(module.COMMANDS)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lora-diffusion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in commands().values():
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import transformers

    transformers.logging.set_verbosity_error()
    for noisy in ("transformers", "accelerate", "datasets", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return commands()[args.command][1](args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"lora-diffusion {args.command}: error: {err}", file=sys.stderr)
        return 2
