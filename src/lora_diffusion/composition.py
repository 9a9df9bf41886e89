"""``lora-diffusion compose``: M saved adapters -> one saved adapter that ``evaluate``,
``generate`` and ``load_pipeline`` load like any other.

    compose({"sst2": DIR, "trec": DIR}, "runs/composed", mode="uniform")          # Eq. 22, w_j = 1/M
    compose(..., mode="weights", weights=[0.7, 0.3])                            # user weights
    compose(..., mode="router", router="runs/router/adapter")                     # Eq. 21 router
    compose(..., mode="merge-average")  /  mode="merge-ties", density=0.5            # parameter-space baselines

Superposition modes (``router``, ``uniform``, ``weights``, ``oracle``) need trajectory adapters
(or one saved ``trajectory-composed`` adapter, whose tasks and router are reused) and give a
``trajectory-composed`` adapter: one trunk pass per step. Merge modes give one adapter of the
sources' own method: ``merge-average`` for trajectory, bottleneck (``adapter``) and BitFit
adapters; ``merge-<peft combination>`` (linear, cat, ties, dare_linear, dare_ties, svd, ...)
for weight LoRA through peft's ``add_weighted_adapter``. Weights default to 1/M. The output
also holds ``composition.json`` (sources, mode, weights, seed, density).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import ConfigError
from .hub import load_base
from .methods.compose import MODES, compose_adapters
from .methods.merge import LORA_COMBINATIONS, average_merge, lora_merge
from .methods.persistence import check_base, load_method, read_adapter_config, save_method
from .utils.integrity import verify_files
from .utils.io import atomic_write_json

MERGE_MODES = ("merge-average", *(f"merge-{c}" for c in LORA_COMBINATIONS))
COMPOSE_MODES = (*MODES, *MERGE_MODES)


def parse_adapters(text: str) -> dict[str, str]:
    """``name=DIR,name=DIR`` -> {name: DIR} (names unique, no '.')."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise ConfigError(f"adapters: expected name=DIR, got {item!r}", field="adapters")
        if name in out or "." in name:
            raise ConfigError(f"adapters: task name {name!r} repeats or holds a '.'", field="adapters")
        out[name] = directory
    if not out:
        raise ConfigError("adapters: give at least one name=DIR", field="adapters")
    return out


def parse_weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"weights: expected comma-separated numbers, got {text!r}", field="weights") from None


def _shared_task_format(metas: list[dict[str, Any]]) -> dict[str, Any] | None:
    formats = [m.get("task_format") for m in metas]
    return formats[0] if formats[0] and all(f == formats[0] for f in formats) else None


def compose(adapters: dict[str, str], output: str | Path, mode: str = "uniform", weights: list[float] | None = None,
            router: str = "", base: str = "", density: float | None = None, seed: int = 0,
            overwrite: bool = False) -> dict[str, Any]:
    """Build and save the composed adapter; returns what ``composition.json`` records."""
    if mode not in COMPOSE_MODES:
        raise ConfigError(f"mode: must be one of {COMPOSE_MODES}, got {mode!r}", field="mode")
    pruned = mode.removeprefix("merge-") in ("ties", "dare_linear", "dare_ties", "magnitude_prune", "ties_svd",
                                              "dare_linear_svd", "dare_ties_svd")
    if pruned and density is None:
        raise ConfigError(f"density: mode {mode} needs --density (the kept fraction, in (0, 1])", field="density")
    if density is not None and not 0 < density <= 1:
        raise ConfigError(f"density: must lie in (0, 1], got {density}", field="density")
    out = Path(output)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: pass --overwrite or choose another --output")
    for name, directory in adapters.items():
        if out.resolve() == Path(directory).resolve():
            raise ConfigError(f"output {out} is the source adapter {name}: choose another", field="output")
    metas = {name: read_adapter_config(d) for name, d in adapters.items()}
    source = base or next(iter(metas.values())).get("base_source") or ""
    if not source:
        raise ConfigError("base: the adapters do not record their base: pass --base", field="base")
    backbone = load_base(source)
    fingerprint = next(iter(metas.values()))["base_fingerprint"]
    for name, meta in metas.items():
        check_base(meta["base_fingerprint"], backbone, Path(adapters[name]))
    methods = sorted({m["method"] for m in metas.values()})
    if mode in MODES:
        model, tasks = _superposed(adapters, metas, backbone, mode, weights, router)
    elif mode == "merge-average":
        models = [load_method(d, backbone if metas[n]["method"] == "trajectory" else load_base(source))
                  for n, d in adapters.items()]
        tasks = list(adapters)
        model = average_merge(models, _weights(weights, len(models)), load_base(source))
    else:
        if methods != ["lora"]:
            raise ConfigError(f"mode {mode}: peft combinations merge weight LoRA adapters, got {methods}", field="mode")
        for name, d in adapters.items():
            verify_files(d, metas[name].get("files_sha256", {}), Path(d) / "adapter_config.json")
        tasks = list(adapters)
        model = lora_merge({n: Path(d) / "peft" for n, d in adapters.items()}, _weights(weights, len(tasks)),
                           mode.removeprefix("merge-"), load_base(source), backbone, density, seed)
    task_format = _shared_task_format(list(metas.values()))
    save_method(model, out, fingerprint, extra={"task_format": task_format} if task_format else None)
    record = {"mode": mode, "method": model.method, "tasks": tasks, "sources": dict(adapters),
              "source_methods": {n: m["method"] for n, m in metas.items()}, "weights": weights, "router": router or None,
              "density": density, "seed": seed, "base": source}
    atomic_write_json(out / "composition.json", record)
    return record


def _weights(weights: list[float] | None, m: int) -> list[float]:
    if weights is None:
        return [1.0 / m] * m
    if len(weights) != m:
        raise ConfigError(f"weights: need one per adapter ({m}), got {weights}", field="weights")
    return list(weights)


def _superposed(adapters: dict[str, str], metas: dict[str, Any], backbone, mode: str, weights, router: str):
    """(composed model, task names) from trajectory adapters, or from one composed adapter."""
    task_adapters, routers = {}, []
    for name, d in adapters.items():
        model = load_method(d, backbone)
        if model.method == "trajectory":
            task_adapters[name] = model.adapter
        elif model.method == "trajectory-composed":
            if len(adapters) != 1:
                raise ConfigError(f"adapters: {name} is a composed adapter: give it alone", field="adapters")
            task_adapters.update(model.adapters.items())
            routers.append(model.router)
        else:
            raise ConfigError(f"mode {mode}: superposition needs trajectory adapters; {name} is {model.method!r} "
                              "(use a merge-* mode)", field="mode")
    names = list(task_adapters)
    route = None
    if router:
        routed = load_method(router, backbone)
        if routed.method != "trajectory-composed" or routed.router is None:
            raise ConfigError(f"router: {router} holds no router (a trajectory-composed adapter trained with "
                              "router=true)", field="router")
        if list(routed.tasks) != names:
            raise ConfigError(f"router: {router} routes over {routed.tasks}, the adapters are {names} (same names, "
                              "same order)", field="router")
        route = routed.router
    elif routers and routers[0] is not None:
        route = routers[0]
    if mode == "router" and route is None:
        raise ConfigError("mode router: give --router DIR (or a composed adapter trained with a router)", field="router")
    if mode == "weights" and weights is None:
        raise ConfigError("mode weights: give --weights", field="weights")
    if mode != "weights" and weights is not None:
        raise ConfigError(f"weights: only mode 'weights' takes them (mode is {mode!r})", field="weights")
    fixed = _weights(weights, len(names)) if mode == "weights" else None
    return compose_adapters(backbone, task_adapters, mode, fixed, route), names


def describe(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2)
