"""Saving and loading trained methods, tied to the exact base they were trained on.

A saved adapter is a directory with ``adapter_config.json`` (method, its config, T, dims and
the base's fingerprint: its config plus a SHA-256 of its weights) and
``adapter_model.safetensors`` holding only the trained tensors. Full fine-tuning saves the
whole model in Hugging Face format in ``model/`` instead (``hub.save_base``), plus its
classification head, if any, in the safetensors file; weight LoRA also writes peft's own
format to ``peft/`` (``PeftModel.from_pretrained`` reads it).

``adapter_config.json`` records the SHA-256 of every tensor file of the adapter
(``files_sha256``: the trained tensors, full fine-tuning's ``model/`` weights, the ``peft/``
copy); loading checks them, and checks every field of the config (``adapter_files``), so a
damaged file or an edited config is one line naming the file (and the field).

``prompt_attention`` ("full" or "prefix", ``prompt_cache.py``) records how the model attended in
training; loading restores it on the backbone (an adapter saved without it: "full"), and
generation uses it unless told otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..backbone import DiffusionLM, unwrap_backbone
from ..config import to_dict
from ..diffusion.sampler import PROMPT_ATTENTION
from ..hub import load_base, save_base
from ..utils.integrity import hash_files, verify_files
from ..utils.io import atomic_directory, read_json
from .adapter_files import CONFIG_FILE, AdapterError, validate_adapter_config
from .head import attach_head, head_of
from .registry import apply_method, method_config

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "AdapterError", "base_fingerprint", "load_method", "read_adapter_config",
           "save_method"]
WEIGHTS_FILE = "adapter_model.safetensors"
log = logging.getLogger(__name__)


def base_fingerprint(backbone: DiffusionLM) -> dict[str, Any]:
    """Identity of a base: architecture, sizes, and a SHA-256 over its weights (by name)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    cfg = backbone.mlm.config
    return {
        "model_type": cfg.model_type,
        "hidden_size": backbone.hidden_size,
        "vocab_size": backbone.vocab_size,
        "num_layers": int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", 0)),
        "weights_sha256": digest.hexdigest(),
    }


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the names and bytes of the trained tensors (what a saved adapter holds): the
    key of a kept evaluation (``utils.resume``)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(trained_state(model).items()):
        digest.update(name.encode())
        digest.update((tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy().tobytes())
    return digest.hexdigest()


def saved_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What is saved: the trained tensors, or a method's own ``saved_state()`` (a composed
    model keeps its frozen task adapters too)."""
    return model.saved_state() if hasattr(model, "saved_state") else trained_state(model)


def save_method(model: torch.nn.Module, directory: str | Path, fingerprint: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> Path:
    """Save what the method trained (atomically). ``fingerprint`` is the base's identity taken
    before training; it defaults to the current backbone's."""
    backbone = unwrap_backbone(model)
    head = head_of(model)
    meta = {
        "method": model.method,
        "config": to_dict(model.cfg),
        "num_steps": backbone.diffusion.num_steps,
        "diffusion": to_dict(backbone.diffusion),
        "base_fingerprint": fingerprint or base_fingerprint(backbone),
        "base_source": getattr(backbone, "source", None),
        "prompt_attention": backbone.prompt_attention or "full",
        **(extra or {}),
    }
    if head is not None:
        meta["classification_head"] = {"num_labels": head.out_features, "weight": model.cls_head_weight}
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        if model.method == "full":
            save_base(backbone, tmp / "model")
            if head is not None:
                save_file({f"cls_head.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
                          str(tmp / WEIGHTS_FILE))
        else:
            save_file(saved_tensors(model), str(tmp / WEIGHTS_FILE))
        if hasattr(model, "save_peft"):
            model.save_peft(tmp / "peft")
        meta["files_sha256"] = hash_files(tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return directory


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    """The validated ``adapter_config.json`` of ``directory`` (every problem names the field)."""
    path = Path(directory) / CONFIG_FILE
    if Path(directory).is_file():
        raise AdapterError(f"{directory}: is a file; give the adapter directory (holding {CONFIG_FILE})")
    if not path.is_file():
        raise AdapterError(f"no {CONFIG_FILE} in {directory}")
    meta = read_json(path, AdapterError)
    attention = meta.pop("prompt_attention", "full") if isinstance(meta, dict) else "full"  # older adapters: full
    meta = validate_adapter_config(meta, path)
    if attention not in PROMPT_ATTENTION:
        raise AdapterError(f"{path}: field 'prompt_attention': must be one of {list(PROMPT_ATTENTION)}, "
                           f"got {attention!r}")
    return {**meta, "prompt_attention": attention}


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(directory / WEIGHTS_FILE))
    except (OSError, SafetensorError) as err:
        raise AdapterError(f"unreadable adapter weights {directory / WEIGHTS_FILE}: {err}") from err


def _check_shapes(state: dict[str, torch.Tensor], model: torch.nn.Module, directory: Path) -> None:
    """A weights file that does not fit the recorded config (an edited ``config``) is one line."""
    params = dict(model.named_parameters())
    for name, tensor in sorted(state.items()):
        want = tuple(params[name].shape)
        if tuple(tensor.shape) != want:
            raise AdapterError(f"{directory / CONFIG_FILE}: field 'config' does not match {WEIGHTS_FILE}: tensor "
                               f"{name} is {tuple(tensor.shape)} there but {want} for the recorded config "
                               f"(was {CONFIG_FILE} edited?)")


def check_base(saved: dict[str, Any], backbone: DiffusionLM, directory: Path) -> None:
    """Refuse a base other than the one the adapter was trained on, naming both."""
    current = base_fingerprint(backbone)
    if saved["hidden_size"] != current["hidden_size"]:
        raise AdapterError(
            f"adapter {directory} was trained on a base with hidden size {saved['hidden_size']} "
            f"({saved['model_type']}, weights {saved['weights_sha256'][:12]}); this base has hidden size "
            f"{current['hidden_size']} ({current['model_type']}, weights {current['weights_sha256'][:12]})"
        )
    if saved != current:
        raise AdapterError(
            f"adapter {directory} belongs to another base: saved fingerprint {saved['weights_sha256'][:12]} "
            f"({saved['model_type']}, d={saved['hidden_size']}), this base {current['weights_sha256'][:12]} "
            f"({current['model_type']}, d={current['hidden_size']})"
        )


def _restore_attention(backbone: DiffusionLM, attention: str, directory: Path) -> None:
    """The prompt attention the adapter was trained with, on the backbone it is loaded on."""
    from ..config import ConfigError
    from ..prompt_cache import check_attention

    try:
        check_attention(backbone, attention)
    except ConfigError as err:
        raise AdapterError(f"{directory / CONFIG_FILE}: field 'prompt_attention': {str(err).split(': ', 1)[1]}") from None
    if backbone.prompt_attention and backbone.prompt_attention != attention:
        log.warning("%s was trained with %s prompt attention; the backbone it is loaded on attended with %s: now %s",
                    directory, attention, backbone.prompt_attention, attention)
    backbone.prompt_attention = attention


def load_method(directory: str | Path, backbone: DiffusionLM | str | None = None) -> torch.nn.Module:
    """Rebuild a saved method on ``backbone`` (a loaded base, a base path, or the recorded
    source). Full fine-tuning loads its own saved model."""
    directory = Path(directory)
    meta = read_adapter_config(directory)
    cfg = method_config(meta["method"], meta["config"])
    state = _read_weights(directory) if (meta["method"] != "full" or (directory / WEIGHTS_FILE).exists()) else {}
    if "files_sha256" in meta:
        verify_files(directory, meta["files_sha256"], directory / CONFIG_FILE)
    else:
        log.warning("%s records no SHA-256 of its files (saved by an older version): not verified",
                    directory / CONFIG_FILE)
    if meta["method"] == "full":
        model = apply_method("full", load_base(str(directory / "model")), cfg)
    else:
        if backbone is None or isinstance(backbone, str):
            source = backbone or meta.get("base_source")
            if not source:
                raise AdapterError(f"adapter {directory} does not record its base: pass one")
            backbone = load_base(source)
        check_base(meta["base_fingerprint"], backbone, directory)
        saved = meta.get("diffusion") or {}  # the T and schedule the adapter was trained with
        backbone.set_process(int(saved.get("num_steps") or 0), str(saved.get("schedule") or ""))
        model = apply_method(meta["method"], backbone, cfg)
    _restore_attention(unwrap_backbone(model), meta["prompt_attention"], directory)
    if "classification_head" in meta:
        attach_head(model, meta["classification_head"]["num_labels"], meta["classification_head"]["weight"])
    expected = set(saved_tensors(model))
    if meta["method"] == "full":
        expected = {k for k in expected if k.startswith("cls_head.")}
        if not expected:
            return model.eval()
    if set(state) != expected:
        raise AdapterError(f"{directory / CONFIG_FILE}: field 'config' does not match {WEIGHTS_FILE} for method "
                           f"{meta['method']!r} (tensors missing there {sorted(expected - set(state))[:3]}, "
                           f"unexpected {sorted(set(state) - expected)[:3]})")
    _check_shapes(state, model, directory)
    model.load_state_dict(state, strict=False)
    return model.eval()
