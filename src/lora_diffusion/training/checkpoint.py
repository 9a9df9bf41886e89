"""Training checkpoints: trainable weights, optimiser, scheduler, step and every RNG state,
each tensor in safetensors, written atomically (temp dir + rename), a bounded number kept.

Layout of ``<output>/checkpoints/step-000123/``:
  trainable.safetensors   trainable parameters by name
  optimizer.safetensors   flattened optimiser state ("state.<idx>.<key>")
  rng.safetensors         torch CPU (+ CUDA) RNG states (dropout)
  state.json              step, scheduler, optimiser param groups, python/numpy RNG, identity,
                          the run's configuration and the SHA-256 of each safetensors file
                          (checked on load: a changed file is refused, naming it)
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..utils.integrity import IntegrityError, hash_files, verify_files
from ..utils.io import atomic_directory

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or belongs to another run."""


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"state.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = val
    for name, val in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    identity: dict[str, Any],
    keep: int,
    run_config: dict[str, Any] | None = None,
    *,
    gathered: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
    timing: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically under ``root`` and prune to the newest ``keep``.
    ``run_config`` (the run's whole configuration) lets ``--resume`` refuse a changed one.
    ``gathered``: the trained tensors and the optimiser state dict already gathered whole
    (FSDP, whose parameters and optimiser state are shards), written instead of the model's
    and the optimiser's own: the files are those of a single-process run. ``timing``: the
    training time up to this step over every segment of the run (read back by
    ``checkpoint_timing``), so that a resumed run reports its whole training time."""
    target = root / f"step-{step:07d}"
    weights, opt_state = gathered if gathered is not None else (trainable_state(model), optimizer.state_dict())
    opt_tensors, opt_meta = _flatten_optimizer(opt_state)
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    with atomic_directory(target) as tmp:
        save_file(weights, str(tmp / "trainable.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_file(rng, str(tmp / "rng.safetensors"))
        state = {
            "step": step,
            "identity": identity,
            "scheduler": sched,
            "optimizer": opt_meta,
            "python_random": random.getstate(),
            "numpy_random": _numpy_state(),
            "run_config": run_config,
            "timing": timing,
            "files_sha256": hash_files(tmp),
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, default=_json_default))
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def checkpoint_timing(path: Path) -> dict[str, Any]:
    """The ``timing`` saved with checkpoint ``path`` ({} for checkpoints of older versions)."""
    try:
        return json.loads((path / STATE_FILE).read_text()).get("timing") or {}
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"unreadable checkpoint {path}: {err}") from err


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    identity: dict[str, Any],
    *,
    load_state: Callable[[dict[str, torch.Tensor], dict[str, Any]], None] | None = None,
) -> int:
    """Restore everything saved by ``save_checkpoint``; return the step. A checkpoint of another
    method or base (``identity`` differs) is refused with both named. ``load_state(weights,
    optimizer_state_dict)`` puts the whole tensors in instead of copying them into the
    parameters and the optimiser (FSDP: every rank reads the files and keeps its shard)."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
        if "files_sha256" in state:  # checkpoints of older versions record none
            verify_files(path, state["files_sha256"], path / STATE_FILE)
        weights = load_file(str(path / "trainable.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
        rng = load_file(str(path / "rng.safetensors"))
    except IntegrityError as err:
        raise CheckpointError(f"damaged checkpoint: {err}") from None
    except (OSError, json.JSONDecodeError, SafetensorError, KeyError) as err:
        raise CheckpointError(f"unreadable checkpoint {path}: {err}") from err
    saved_id = state.get("identity", {})
    mismatched = {k: (saved_id.get(k), v) for k, v in identity.items() if saved_id.get(k) != v}
    if mismatched:
        detail = "; ".join(f"{k}: checkpoint has {a!r}, this run has {b!r}" for k, (a, b) in mismatched.items())
        raise CheckpointError(f"checkpoint {path} belongs to another run ({detail})")
    # FSDP1 names a wrapped layer's parameters "...layer.0._fsdp_wrapped_module.<name>"
    params = {n.replace("_fsdp_wrapped_module.", ""): p for n, p in model.named_parameters()}
    missing = [n for n in weights if n not in params] + [
        n for n, p in params.items() if p.requires_grad and n not in weights
    ]
    if missing:
        raise CheckpointError(f"checkpoint {path} does not match the model (e.g. {missing[:3]})")
    if load_state is not None:
        load_state(weights, _unflatten_optimizer(opt_tensors, state["optimizer"]))
    else:
        with torch.no_grad():
            for name, val in weights.items():
                params[name].copy_(val)
        optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, state["optimizer"]))
    scheduler.load_state_dict({**scheduler.state_dict(), **state["scheduler"]})
    torch.set_rng_state(rng["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda_"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    random.setstate(_tuples(state["python_random"]))
    np.random.set_state(_numpy_restore(state["numpy_random"]))
    return int(state["step"])


def _numpy_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _numpy_restore(saved: list[Any]) -> tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = saved
    return (name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached)


def _tuples(obj: Any) -> Any:
    return tuple(_tuples(x) for x in obj) if isinstance(obj, list) else obj


def _json_default(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
