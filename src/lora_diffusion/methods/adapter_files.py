"""What ``adapter_config.json`` must hold, checked field by field when an adapter is loaded.

Every problem (a missing key, a value of the wrong type, an unknown field, a method option
out of range) is one ``AdapterError`` line, ``"<dir>/adapter_config.json: field 'a.b': reason"``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..config import ConfigError, DiffusionConfig, from_dict

CONFIG_FILE = "adapter_config.json"
KNOWN_FIELDS = ("method", "config", "num_steps", "diffusion", "base_fingerprint", "base_source", "task_format",
                "classification_head", "files_sha256", "prompt_attention")
FINGERPRINT = {"model_type": str, "hidden_size": int, "vocab_size": int, "num_layers": int, "weights_sha256": str}


class AdapterError(RuntimeError):
    """An adapter cannot be read or does not belong to this base."""


def _fail(path: Path, name: str, reason: str) -> None:
    raise AdapterError(f"{path}: field '{name}': {reason}")


def _config_error(path: Path, prefix: str, err: ConfigError) -> None:
    message, name = str(err), err.field or ""
    if name and message.startswith(f"{name}: "):
        message = message[len(name) + 2:]
    name = name.removeprefix("method_options.")  # method_config's prefix: the file calls it "config"
    _fail(path, f"{prefix}{name}" if name else prefix.rstrip("."), message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_adapter_config(meta: Any, path: Path) -> dict[str, Any]:
    """``meta`` (the parsed file) if it is a well-formed adapter config; else one line naming
    the file and the field."""
    from .registry import method_config, registered_methods

    if not isinstance(meta, dict):
        raise AdapterError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    unknown = sorted(set(meta) - set(KNOWN_FIELDS))
    if unknown:
        _fail(path, unknown[0], f"unknown field; known fields: {', '.join(KNOWN_FIELDS)}")
    for name in ("method", "config", "base_fingerprint"):
        if name not in meta:
            _fail(path, name, "missing")
    if meta["method"] not in registered_methods():
        _fail(path, "method", f"unknown method {meta['method']!r}; registered: {registered_methods()}")
    if not isinstance(meta["config"], dict):
        _fail(path, "config", f"expected an object of method options, got {meta['config']!r}")
    try:
        method_config(meta["method"], meta["config"])
    except ConfigError as err:
        _config_error(path, "config.", err)
    fp = meta["base_fingerprint"]
    if not isinstance(fp, dict):
        _fail(path, "base_fingerprint", f"expected an object, got {fp!r}")
    for key, kind in FINGERPRINT.items():
        if key not in fp:
            _fail(path, f"base_fingerprint.{key}", "missing")
        if not (_is_int(fp[key]) if kind is int else isinstance(fp[key], kind)):
            _fail(path, f"base_fingerprint.{key}", f"expected {kind.__name__}, got {fp[key]!r}")
    if "num_steps" in meta and not (_is_int(meta["num_steps"]) and meta["num_steps"] >= 1):
        _fail(path, "num_steps", f"must be an integer >= 1, got {meta['num_steps']!r}")
    if "diffusion" in meta:
        if not isinstance(meta["diffusion"], dict):
            _fail(path, "diffusion", f"expected an object, got {meta['diffusion']!r}")
        try:
            from_dict(DiffusionConfig, meta["diffusion"])
        except ConfigError as err:
            _config_error(path, "diffusion.", err)
    if meta.get("base_source") is not None and not isinstance(meta["base_source"], str):
        _fail(path, "base_source", f"expected a path or hub id, got {meta['base_source']!r}")
    _check_head(meta.get("classification_head"), path)
    _check_task_format(meta.get("task_format"), path)
    return meta


def _check_head(head: Any, path: Path) -> None:
    if head is None:
        return
    if not isinstance(head, dict):
        _fail(path, "classification_head", f"expected an object, got {head!r}")
    labels, weight = head.get("num_labels"), head.get("weight", 1.0)
    if not (_is_int(labels) and labels >= 1):
        _fail(path, "classification_head.num_labels", f"must be an integer >= 1, got {labels!r}")
    if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight)
            and weight >= 0):
        _fail(path, "classification_head.weight", f"must be a finite number >= 0, got {weight!r}")


def _check_task_format(fmt: Any, path: Path) -> None:
    from ..data.encoding import ResponseFormat
    from ..data.records import DataFileConfig

    if fmt is None:
        return
    if not isinstance(fmt, dict):
        _fail(path, "task_format", f"expected an object, got {fmt!r}")
    for key, cls in (("response", ResponseFormat), ("data", DataFileConfig)):
        value = fmt.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            _fail(path, f"task_format.{key}", f"expected an object, got {value!r}")
        try:
            from_dict(cls, value)
        except ConfigError as err:
            _config_error(path, f"task_format.{key}.", err)
    words = fmt.get("label_words", {})
    if not isinstance(words, dict) or not all(isinstance(v, str) and v for v in words.values()):
        _fail(path, "task_format.label_words", f"expected {{label id: word}}, got {words!r}")
    for key in words:
        if not str(key).isdigit():
            _fail(path, "task_format.label_words", f"label ids must be integers, got {key!r}")
