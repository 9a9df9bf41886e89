"""What every command shares: the config flags (``--config``, ``--set``, ``--quiet``) and
the parsing of ``KEY=VALUE`` overrides."""

from __future__ import annotations

import argparse

from ..config import ConfigError, load_yaml


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with overrides of the defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_sampling(p: argparse.ArgumentParser, prefix: str = "sampling.") -> None:
    """The sampler options, as flags that land on ``<prefix>field`` of the command's config."""
    g = p.add_argument_group("sampling")
    g.add_argument("--steps", type=int, dest=f"{prefix}num_steps", metavar="T", help="reverse steps T (default: the base's)")
    g.add_argument("--remasking", dest=f"{prefix}remasking", choices=["random", "low_confidence", "margin"],
                   help="random (exact ancestral sampler, default), low_confidence (LLaDA) or margin")
    g.add_argument("--temperature", type=float, dest=f"{prefix}temperature", metavar="TAU",
                   help="sample at this temperature (default: greedy)")
    g.add_argument("--top-k", type=int, dest=f"{prefix}top_k", metavar="K")
    g.add_argument("--block-length", type=int, dest=f"{prefix}block_length", metavar="N",
                   help="semi-autoregressive blocks of this many response tokens (0: one block)")
    g.add_argument("--parallel", dest=f"{prefix}parallel", choices=["none", "threshold", "fixed"],
                   help="parallel decoding: threshold (reveal every position above --threshold, at least "
                        "one per model call) or fixed (--tokens-per-call per call); default none")
    g.add_argument("--threshold", type=float, dest=f"{prefix}threshold", metavar="P",
                   help="confidence threshold of --parallel threshold (default 0.9; implies it)")
    g.add_argument("--tokens-per-call", type=int, dest=f"{prefix}tokens_per_call", metavar="K",
                   help="tokens revealed per model call with --parallel fixed (default 2; implies it)")
    g.add_argument("--prompt-cache", dest=f"{prefix}prompt_cache", choices=["none", "exact", "approximate"],
                   help="reuse the prompt's keys/values across model calls: exact (prefix attention: the "
                        "model's own if it was trained so, else give --prompt-attention prefix) or approximate "
                        "(refreshed per --block-length block); default none")
    g.add_argument("--prompt-attention", dest=f"{prefix}prompt_attention", choices=["full", "prefix"],
                   help="prefix: prompt positions attend only to the prompt (default: as the adapter was trained)")
    g.add_argument("--response-length", type=int, dest=f"{prefix}response_length", metavar="N",
                   help="response positions, end token included (default: the adapter's budget)")
    g.add_argument("--precision", dest=f"{prefix}precision", choices=["fp32", "bf16"],
                   help="bf16: model calls under bfloat16 autocast (faster where the hardware has bf16 "
                        "matrix units; outputs may differ slightly); default fp32")
    g.add_argument("--end-bias", type=float, dest=f"{prefix}end_bias", metavar="B",
                   help="add B to the end token's logit at every draw (free text; negative: longer "
                        "responses, against a model that stops at once); default 0")
    g.add_argument("--batch-size", type=int, dest=f"{prefix}batch_size", metavar="N")
    g.add_argument("--seed", type=int, dest=f"{prefix}seed", metavar="N", help="sampling seed")


def sampling_overrides(args: argparse.Namespace, prefix: str = "sampling.") -> dict[str, object]:
    """The sampling flags that were given; a temperature turns greedy decoding off, and
    ``--threshold`` / ``--tokens-per-call`` without ``--parallel`` select that mode.
    ``--prompt-cache exact`` without ``--prompt-attention`` leaves the attention to the model
    (``GenerationOptions.resolved_attention``): prefix, refused on an adapter trained with full
    attention."""
    out = {k: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}
    if out.get(f"{prefix}temperature") is not None:
        out[f"{prefix}greedy"] = False
    implied = [mode for mode, key in (("threshold", "threshold"), ("fixed", "tokens_per_call"))
               if f"{prefix}{key}" in out]
    if f"{prefix}parallel" not in out and implied:
        if len(implied) > 1:
            raise ConfigError("--threshold and --tokens-per-call select different parallel modes; "
                              "give --parallel threshold or --parallel fixed")
        out[f"{prefix}parallel"] = implied[0]
    return out


def flag_overrides(args: argparse.Namespace, names: dict[str, str]) -> dict[str, object]:
    out = {}
    for attr, key in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    return out


def load_pairs(pairs: list[str]) -> dict[str, object]:
    import yaml

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = load_yaml(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML") from None
    return out
