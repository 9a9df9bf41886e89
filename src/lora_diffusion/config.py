"""Typed, validated configuration dataclasses; YAML files and ``key=value`` overrides on top.

Every dataclass validates itself in ``__post_init__``; a bad value raises ``ConfigError``
naming the dotted field (``train.lr``), so it fails at load, before any work is done.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .diffusion.loss import LOSS_KINDS
from .diffusion.schedules import SCHEDULES

T = TypeVar("T")


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false (any case) are booleans, so an
    unquoted ``no``, ``off`` or ``y`` stays text (``train.mixed_precision: no`` means "no")."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def load_yaml(text: str) -> Any:
    """Parse YAML text (a file, or the value of a ``key=value`` override) with YAML 1.2 booleans."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; ``field`` is the dotted
    field at fault, when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def require(ok: bool, name: str, message: str) -> None:
    """Raise ``ConfigError('name: message')`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name}: {message}", field=name)


def require_finite(value: Any, name: str) -> None:
    """Refuse NaN and infinities anywhere in ``value`` (a number, or lists / mappings of them)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}: must be a finite number, got {value!r}", field=name)
    if isinstance(value, dict):
        for k, v in value.items():
            require_finite(v, f"{name}.{k}")
    elif isinstance(value, (list, tuple)):
        for v in value:
            require_finite(v, name)


@dataclass
class DiffusionConfig:
    """The absorbing diffusion process: T steps, schedule, loss and time conditioning."""

    num_steps: int = 100
    schedule: str = "linear"
    loss: str = "simple"
    time_conditioning: bool = False

    def __post_init__(self) -> None:
        require(self.num_steps >= 1, "num_steps", f"must be >= 1, got {self.num_steps}")
        require(
            self.schedule in SCHEDULES,
            "schedule",
            f"unknown schedule {self.schedule!r}; choose from {sorted(SCHEDULES)}",
        )
        require(self.loss in LOSS_KINDS, "loss", f"must be one of {LOSS_KINDS}, got {self.loss!r}")


@dataclass
class TrainConfig:
    """One trainer for every job: AdamW, warmup + cosine, accumulation, clipping."""

    max_steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    warmup_max_fraction: float = 0.1
    min_lr_ratio: float = 0.1
    batch_size: int = 64
    micro_batch_size: int = 16
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    seed: int = 42
    log_every: int = 10
    eval_every: int = 0
    save_every: int = 200
    keep_checkpoints: int = 2
    tensorboard: bool = False  # also write TensorBoard event files to <output>/tensorboard
    gradient_checkpointing: bool = False  # recompute trunk activations in backward (large bases)
    select_metric: str = ""  # a validation score to maximise: keep the best step's state (training/selection.py)
    early_stopping_patience: int = 0  # stop after this many evaluations without a gain (0: never)
    min_delta: float = 0.0  # a gain must exceed this
    min_steps: int = 0  # early stopping never ends a run before this step (e.g. one epoch)

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay", "warmup_max_fraction", "min_lr_ratio", "max_grad_norm"):
            require_finite(getattr(self, name), name)
        require(self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        require(0 < self.lr <= 1, "lr", f"must be > 0 and <= 1 (a larger step diverges at once), got {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(
            0 <= self.warmup_max_fraction <= 1,
            "warmup_max_fraction",
            f"must lie in [0, 1], got {self.warmup_max_fraction}",
        )
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must lie in [0, 1], got {self.min_lr_ratio}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(
            self.micro_batch_size >= 1,
            "micro_batch_size",
            f"must be >= 1, got {self.micro_batch_size}",
        )
        require(
            self.batch_size % self.micro_batch_size == 0,
            "batch_size",
            f"{self.batch_size} is not divisible by micro_batch_size {self.micro_batch_size}",
        )
        require(self.max_grad_norm > 0, "max_grad_norm", f"must be > 0, got {self.max_grad_norm}")
        require(self.early_stopping_patience >= 0, "early_stopping_patience",
                f"must be >= 0, got {self.early_stopping_patience}")
        require(not self.early_stopping_patience or self.select_metric, "early_stopping_patience",
                "early stopping needs a validation score to watch: set train.select_metric")
        require(not self.select_metric or self.eval_every > 0, "select_metric",
                "model selection needs validation evaluations: set train.eval_every > 0")
        require(self.min_delta >= 0, "min_delta", f"must be >= 0, got {self.min_delta}")
        require(0 <= self.min_steps <= self.max_steps, "min_steps",
                f"must lie in 0..max_steps ({self.max_steps}), got {self.min_steps}")
        require(
            self.mixed_precision in ("no", "bf16", "fp16"),
            "mixed_precision",
            f"must be one of no, bf16, fp16; got {self.mixed_precision!r}",
        )
        require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        for name in ("log_every", "eval_every", "save_every"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", f"must be >= 1, got {self.keep_checkpoints}")

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // self.micro_batch_size

    def effective_warmup(self) -> int:
        """Warmup steps, capped at ``warmup_max_fraction`` of a short run."""
        return min(self.warmup_steps, int(self.warmup_max_fraction * self.max_steps))


@dataclass
class PretrainConfig:
    """``lora-diffusion pretrain``: turn an encoder into a base masked-diffusion LM."""

    base: str = "minilm"
    # one or more corpora (file, WikiText-style directory, .csv, or HF id), each cut into chunks of its
    # own and mixed in proportion to their sizes; a single string is one corpus
    corpus: list[str] = field(default_factory=lambda: ["../shared/data/wikitext-2-raw"])
    csv_column: str = "text"  # the text column of a .csv corpus (arXiv abstracts: abstract)
    output_dir: str = "runs/pretrain"
    seq_len: int = 128
    max_train_chunks: int = 0  # per corpus: its first N chunks (0: all)
    eval_chunks: int = 256  # validation chunks in all, shared evenly between the corpora
    keep_layers: int = 0  # keep only the trunk's first N layers (0: all): smaller bases for the scaling study
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_steps=2000, lr=1e-4, warmup_steps=200, batch_size=32, micro_batch_size=32,
            eval_every=250, save_every=250,
        )
    )

    def __post_init__(self) -> None:
        require(self.seq_len >= 8, "seq_len", f"must be >= 8, got {self.seq_len}")
        require(self.max_train_chunks >= 0, "max_train_chunks", f"must be >= 0, got {self.max_train_chunks}")
        require(self.eval_chunks >= 1, "eval_chunks", f"must be >= 1, got {self.eval_chunks}")
        require(self.keep_layers >= 0, "keep_layers", f"must be >= 0, got {self.keep_layers}")
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        require(len(self.corpus) >= 1, "corpus", "names no corpus")
        require(len(set(self.corpus)) == len(self.corpus), "corpus", f"names a corpus twice: {self.corpus}")
        require(self.eval_chunks >= len(self.corpus), "eval_chunks",
                f"must be >= the number of corpora ({len(self.corpus)}), got {self.eval_chunks}")


# ---------------------------------------------------------------------------------- loading
def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], name)
    if dataclasses.is_dataclass(tp):
        require(isinstance(value, dict), name, f"expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{name}.")
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        require(isinstance(value, (list, tuple)), name, f"expected a list, got {value!r}")
        items = [_coerce(v, inner, name) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, str):
            low = value.lower()
            require(low in ("true", "false", "1", "0", "yes", "no", "on", "off"), name,
                    f"expected a boolean, got {value!r}")
            return low in ("true", "1", "yes", "on")
        require(isinstance(value, bool), name, f"expected a boolean, got {value!r}")
        return value
    if tp in (int, float):
        try:
            out = tp(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name}: expected {tp.__name__}, got {value!r}", field=name) from None
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected {tp.__name__}, got {value!r}", field=name)
        if tp is int and isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise ConfigError(f"{name}: expected an integer, got {value!r}", field=name)
        require_finite(out, name)
        return out
    if tp is str:
        return str(value)
    require_finite(value, name)  # untyped values (method options, per-method learning rates)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict; unknown keys and bad values name the field."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    presets = getattr(cls, "PRESETS", None)
    if presets is not None and "preset" in data:  # a named preset's values, then the keys given
        require(data["preset"] in presets, f"{prefix}preset", f"must be one of {sorted(presets)}, got {data['preset']!r}")
        data = {**presets[data["preset"]], **data}
    unknown = sorted(set(data) - names)
    require(not unknown, f"{prefix}{unknown[0]}" if unknown else prefix, f"unknown field; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if not prefix:
            raise
        raise ConfigError(f"{prefix}{err}", field=f"{prefix}{err.field}" if err.field else None) from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (JSON/YAML-serialisable)."""
    return dataclasses.asdict(obj)


def defaults_tree(cls: type) -> dict[str, Any]:
    """The defaults of ``cls`` as a nested dict, without validating them (a command whose
    required fields have empty defaults validates only once its values are in)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for i, key in enumerate(keys[:-1]):
        node = node.setdefault(key, {})
        parent = ".".join(keys[: i + 1])
        require(isinstance(node, dict), parent, f"expected a mapping (to set {dotted}), got {node!r}")
    node[keys[-1]] = value


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None
) -> T:
    """Defaults of ``cls`` <- YAML file ``path`` <- ``overrides`` (``{"train.lr": 3e-4}`` or
    ``["train.lr=3e-4"]``). Validation runs once on the merged result."""
    tree = defaults_tree(cls)
    from_file: set[str] = set()
    if path is not None:
        path = Path(path)
        loaded = read_yaml_mapping(path)
        from_file = set(_dotted_keys(loaded))
        _merge(tree, loaded)
    items = overrides.items() if isinstance(overrides, dict) else _parse_pairs(overrides or [])
    overridden: set[str] = set()
    try:
        for key, value in items:
            if value is not None:
                _set_dotted(tree, key, value)
                overridden.add(key)
        return from_dict(cls, tree)
    except ConfigError as err:
        if path is not None and err.field and _came_from(err.field, from_file, overridden):
            raise ConfigError(f"{path}: {err}", field=err.field) from None
        raise


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML config file's top-level mapping; every problem names the file (and the line)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" if not path.exists() else f"{path}: not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x})") from None
    try:
        loaded = load_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if loaded is None:
        return {}
    require(isinstance(loaded, dict), str(path), f"the top level must be a mapping of fields, got {type(loaded).__name__}")
    bad = [k for k in loaded if not isinstance(k, str)]
    require(not bad, str(path), f"field names must be strings, got {bad[0]!r}" if bad else "")
    return loaded


def _dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out.append(f"{prefix}{k}")
        if isinstance(v, dict):
            out.extend(_dotted_keys(v, f"{prefix}{k}."))
    return out


def _came_from(field: str, from_file: set[str], overridden: set[str]) -> bool:
    """Whether the value of ``field`` (or of a mapping holding it) was set by the config file
    and not replaced by an override."""
    parts = field.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return bool(prefixes & from_file) and not (prefixes & overridden)


def _parse_pairs(pairs: list[str]) -> list[tuple[str, Any]]:
    out = []
    for pair in pairs:
        require("=" in pair, pair, "override must look like key=value")
        key, value = pair.split("=", 1)
        out.append((key.strip(), load_yaml(value)))
    return out


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
