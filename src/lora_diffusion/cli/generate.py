"""``generate``: responses of a saved adapter (or a base) to prompts given on the command line
or read from a file; printed one per line, or written as JSONL with ``--output``."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, load_config, require
from ..data.records import DataFileConfig
from ..generation import GenerationOptions
from .common import add_common, add_sampling, flag_overrides, load_pairs, sampling_overrides
from .finetune import add_data_file_flags


@dataclass
class GenerateConfig:
    adapter: str = ""
    base: str = ""
    prompts: list[str] = field(default_factory=list)
    input_file: str = ""  # JSONL / CSV / TSV: prompts (and optionally responses) in the training layout
    data: DataFileConfig = field(default_factory=DataFileConfig)
    output: str = ""
    overwrite: bool = False
    sampling: GenerationOptions = field(default_factory=GenerationOptions)

    def __post_init__(self) -> None:
        require(bool(self.adapter) or bool(self.base), "adapter", "give --adapter DIR or --base DIR")
        require(bool(self.prompts) != bool(self.input_file), "prompts", "give --prompt TEXT ... or --input-file F")
        require(not self.prompts or not self.data.template or "{prompt}" in self.data.template, "data.template",
                "with --prompt, a template wraps each prompt and must contain {prompt}")


def _generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate responses with a saved adapter or a base")
    add_common(p)
    p.add_argument("--adapter", help="adapter directory written by finetune (its base is the one it records)")
    p.add_argument("--base", help="a base alone, or the adapter's base at another path")
    p.add_argument("--prompt", dest="prompts", action="append", metavar="TEXT",
                   help="a prompt (repeatable); the full instruction text unless --template is given")
    p.add_argument("--input-file", help="JSONL / CSV / TSV with prompts (fields as in training)")
    p.add_argument("--output", help="write {id, prompt, response} JSONL here instead of printing")
    p.add_argument("--overwrite", action="store_const", const=True, help="replace an existing --output")
    add_data_file_flags(p)
    add_sampling(p)


def cmd_generate(args: argparse.Namespace) -> int:
    from ..api import pipeline_for
    from ..data.records import read_records
    from ..utils.io import atomic_write_text, check_writable_file

    overrides = load_pairs(args.overrides)
    overrides.update(flag_overrides(args, {k: k for k in ("adapter", "base", "prompts", "input_file", "output",
                                                          "overwrite")}))
    overrides.update({k: v for k, v in vars(args).items() if k.startswith("data.") and v is not None})
    overrides.update(sampling_overrides(args))
    cfg = load_config(GenerateConfig, args.config, overrides)
    if cfg.output and Path(cfg.output).exists() and not cfg.overwrite and not Path(cfg.output).is_dir():
        raise FileExistsError(f"{cfg.output} exists: pass --overwrite to replace it (nothing was written)")
    if cfg.output and not Path(cfg.output).parent.exists():
        raise ConfigError(f"output: the directory {Path(cfg.output).parent} does not exist")
    if cfg.output:
        check_writable_file(cfg.output, "output")
    pipe = pipeline_for(cfg.adapter, cfg.base)
    if cfg.input_file:
        saved = pipe.task_format.get("data")
        data_cfg = cfg.data if "data" in overrides or any(k.startswith("data.") for k in overrides) or not saved \
            else load_config(DataFileConfig, None, saved)
        records = read_records(cfg.input_file, data_cfg, require_response=False).examples
        prompts, ids = [r.prompt for r in records], [r.id for r in records]
    else:
        template = cfg.data.template  # --template 'review: {prompt} sentiment:' wraps each --prompt
        prompts = [template.format(prompt=p) if template else p for p in cfg.prompts]
        ids = [str(i) for i in range(len(prompts))]
    responses = pipe.generate(prompts, cfg.sampling)
    if cfg.output:
        lines = [json.dumps({"id": i, "prompt": p, "response": r}, ensure_ascii=False)
                 for i, p, r in zip(ids, prompts, responses)]
        atomic_write_text(cfg.output, "\n".join(lines) + "\n")
        print(f"{len(responses)} responses written to {cfg.output}")
    else:
        for response in responses:
            print(response)
    return 0


COMMANDS = {"generate": (_generate_parser, cmd_generate)}
