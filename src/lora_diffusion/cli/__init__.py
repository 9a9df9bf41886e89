"""Command-line interface: ``lora-diffusion <command>``, one module per group of commands.

Every command reads its typed config (defaults <- ``--config file.yaml`` <- ``--set a.b=v``
overrides <- the explicit flags) and fails at load, naming the field, on a bad value; a
user's mistake is one line on stderr and exit code 2, never a traceback (``--debug``, before
the command or after it, shows them). Ctrl-C is one line (for training: the step reached,
the last checkpoint and the command that resumes) and exit code 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from ..config import ConfigError
from . import compose, demo, evaluate, finetune, forgetting, generate, pretrain, probe, study, tools
from .interrupt import interrupted_message

USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError)

MODULES = (pretrain, demo, finetune, generate, evaluate, study, tools, compose, forgetting, probe)


def commands() -> dict:
    out = {}
    for module in MODULES:
        out.update(module.COMMANDS)
    return out


DEBUG_HELP = "show the full traceback of an error (by default a bad input is one line)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lora-diffusion", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in commands().values():
        add_parser(sub)
    for command in sub.choices.values():  # also accepted after the command; never resets the global flag
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror and not isinstance(err, (FileNotFoundError, FileExistsError)):
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    text = str(err) if not isinstance(err, KeyError) else f"missing key {err}"
    return " ".join(text.split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import transformers

    transformers.logging.set_verbosity_error()
    if getattr(args, "quiet", False) or not sys.stderr.isatty():  # progress bars only on a terminal
        transformers.logging.disable_progress_bar()
    for noisy in ("transformers", "accelerate", "datasets", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    prefix = f"lora-diffusion {args.command}"
    try:
        return commands()[args.command][1](args)
    except KeyboardInterrupt as err:
        if debug:
            traceback.print_exc()
        print(f"{prefix}: {interrupted_message(args.command, argv, err)}", file=sys.stderr, flush=True)
        return 130
    except (*USER_ERRORS, OSError) as err:  # a bad input, file or directory: one line
        if debug:
            raise
        print(f"{prefix}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still one line unless --debug
        if debug:
            raise
        print(f"{prefix}: internal error: {type(err).__name__}: {one_line(err)} (run again with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return 1
