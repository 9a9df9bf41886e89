"""The benchmark suite: every figure measured in one run on one base, batch and length.

train step time (median, interleaved) and peak training memory (fresh process each) per
method; generation latency per sample at (batch, length, T) for the frozen base and every
method; trunk passes per sample; bytes on disk; one- vs many-adapter batches; parallel
decoding throughput against the exact sampler at batch 32 (``decoding``); trajectory vs frozen
base latency with many rounds and its noise floor (``latency``); the targets.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backbone import unwrap_backbone
from ..config import require, to_dict
from ..generation import generate
from ..hub import load_base
from ..methods.accounting import parameter_accounting
from ..methods.multitask import MultiTaskTrajectoryModel
from ..methods.persistence import save_method
from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.repro import provenance
from .harness import count_trunk_rows, interleaved, ratio
from .report import markdown, targets
from .workloads import (
    INFERENCE_METHODS,
    generate_fn,
    generation_batch,
    method_model,
    split_precision,
    train_batch,
    train_step_fn,
)

TRAIN_METHODS = ("full", "trajectory", "lora", "adapter", "bitfit", "prefix")
PARTS = ("training", "memory", "inference", "decoding", "latency")
OPTIONAL_PARTS = ("decoding", "latency")  # may be absent from an earlier bench.json that is reused


@dataclass
class BenchConfig:
    base: str = "minilm"
    methods: list[str] = field(default_factory=lambda: list(TRAIN_METHODS))
    method_options: dict[str, Any] = field(default_factory=dict)  # method -> options (defaults otherwise)
    train_batch: int = 16
    train_length: int = 128
    train_rounds: int = 5
    memory_steps: int = 3
    batch: int = 8  # generation: the paper's setting
    length: int = 128
    prompt: int = 32
    num_steps: int = 100
    rounds: int = 3
    tasks: int = 8  # adapters in the mixed-task batch
    decoding_batch: int = 32  # parallel decoding vs the exact sampler (issue #16)
    # Settings timed beside the exact sampler on the bench's synthetic batch, where an untrained
    # adapter is never confident: by default only those whose trunk passes do not depend on the
    # model's confidence (fixed-K; threshold settings are measured on trained adapters by
    # ``bench.decoding``, with their quality).
    decoding_settings: list[str] = field(default_factory=lambda: ["fixed-2", "fixed-8", "fixed-4+bf16", "fixed-8+bf16"])
    # the latency part: trajectory vs frozen base at batch ``batch`` for each setting, the base timed
    # twice in the same rounds (the noise floor), over ``latency_rounds`` interleaved rounds
    latency_settings: list[str] = field(default_factory=lambda: ["exact", "fixed-4"])
    latency_rounds: int = 20
    parts: list[str] = field(default_factory=lambda: list(PARTS))  # others are kept from bench.json
    output_dir: str = "runs/bench"

    def __post_init__(self) -> None:
        from ..methods import TrajectoryConfig

        known = set(TRAIN_METHODS) | {f"trajectory@{p}" for p in TrajectoryConfig.PRESETS}
        unknown = sorted({m for m in self.methods if split_precision(m)[0] not in known})
        require(not unknown, "methods", f"unknown {unknown}; benchmarked methods: {sorted(known)} "
                                        "(each also as <method>+bf16: trained under bfloat16 autocast)")
        for name in ("train_batch", "train_rounds", "memory_steps", "batch", "num_steps", "rounds", "tasks",
                     "decoding_batch", "latency_rounds"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.train_length >= 8, "train_length", f"must be >= 8, got {self.train_length}")
        require(1 <= self.prompt <= self.length - 2, "prompt", f"must lie in 1..length-2, got {self.prompt}")
        bad = sorted(set(self.parts) - set(PARTS))
        require(self.parts and not bad, "parts", f"choose from {list(PARTS)}, got {self.parts}")
        require(bool(self.decoding_settings), "decoding_settings", "give at least one setting")
        for name in self.decoding_settings:
            require(name != "exact", "decoding_settings", "'exact' is the reference, always timed")
            _decoding().setting_options(name, self.length - self.prompt - 1)  # an unknown part: one line
        require(bool(self.latency_settings), "latency_settings", "give at least one setting")
        for name in self.latency_settings:
            _decoding().setting_options(name, self.length - self.prompt - 1)


def _decoding():
    """``bench.decoding``, imported when used (so ``python -m lora_diffusion.bench.decoding`` runs cleanly)."""
    from . import decoding

    return decoding


def _progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def bench_training(backbone, cfg: BenchConfig) -> dict[str, Any]:
    batch = train_batch(backbone, cfg.train_batch, cfg.train_length)
    steps = {m: train_step_fn(backbone, m, batch, cfg.method_options) for m in cfg.methods}
    _progress(f"train steps: {len(steps)} methods x {cfg.train_rounds} rounds (batch {cfg.train_batch} x {cfg.train_length})")
    times = interleaved(steps, cfg.train_rounds)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m, step in steps.items():
            saved = save_method(step.model, Path(tmp) / m)
            acc = parameter_accounting(step.model, saved)
            out[m] = {**times[m], "trainable_parameters": acc["trainable_parameters"],
                      "bytes_on_disk": acc["bytes_on_disk"]}
    return out


def bench_memory(cfg: BenchConfig) -> dict[str, Any]:
    out = {}
    for m in cfg.methods:
        _progress(f"peak training memory: {m} (own process)")
        cmd = [sys.executable, "-m", "lora_diffusion.bench.memory", "--base", cfg.base, "--method", m,
               "--batch", str(cfg.train_batch), "--length", str(cfg.train_length), "--steps", str(cfg.memory_steps),
               "--threads", str(torch.get_num_threads()), "--options", json.dumps(cfg.method_options)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory probe for {m} failed:\n{done.stderr[-2000:]}")
        out[m] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def bench_inference(backbone, cfg: BenchConfig) -> dict[str, Any]:
    gb = generation_batch(backbone, cfg.batch, cfg.length, cfg.prompt)
    models = {name: method_model(backbone, name, cfg.method_options) for name in INFERENCE_METHODS}
    fns = {name: generate_fn(model, gb, cfg.num_steps) for name, model in models.items()}
    fns["base (step-by-step sampler)"] = generate_fn(models["base"], gb, cfg.num_steps, event_driven=False)
    _progress(f"generation latency: {len(fns)} configurations x {cfg.rounds} rounds (batch {cfg.batch}, "
              f"length {cfg.length}, T = {cfg.num_steps})")
    times = interleaved(fns, cfg.rounds)
    passes = {}
    for name, event in (("event-driven", True), ("step-by-step", False)):
        with count_trunk_rows(models["trajectory"].backbone) as counts:
            generate_fn(models["trajectory"], gb, cfg.num_steps, event)()
        passes[name] = {"calls": counts["calls"], "rows_per_sample": counts["rows"] / cfg.batch}
    out = {name: {**t, "per_sample_s": t["median_s"] / cfg.batch} for name, t in times.items()}
    return {"latency": out, "trunk_passes": passes, "response_tokens": int(gb["generate_mask"][0].sum()),
            "multitask": bench_multitask(models["trajectory"], gb, cfg)}


def bench_multitask(trajectory, gb, cfg: BenchConfig) -> dict[str, Any]:
    """One adapter for the whole batch vs ``cfg.tasks`` adapters spread over its rows."""
    gen = torch.Generator().manual_seed(1)
    adapters = {}
    for k in range(cfg.tasks):
        adapter = copy.deepcopy(trajectory.adapter)
        with torch.no_grad():
            for p in adapter.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=gen))
        adapters[f"task{k}"] = adapter
    multi = MultiTaskTrajectoryModel(trajectory.backbone, adapters).eval()
    one = dict(gb, task_ids=torch.zeros(cfg.batch, dtype=torch.long))
    mixed = dict(gb, task_ids=torch.arange(cfg.batch) % cfg.tasks)
    _progress(f"multi-task serving: 1 vs {cfg.tasks} adapters in one batch")
    times = interleaved({"one adapter": generate_fn(multi, one, cfg.num_steps),
                         f"{cfg.tasks} adapters": generate_fn(multi, mixed, cfg.num_steps)}, cfg.rounds)
    return {"times": times, "ratio": ratio(times[f"{cfg.tasks} adapters"]["median_s"], times["one adapter"]["median_s"])}


def bench_decoding(backbone, cfg: BenchConfig) -> dict[str, Any]:
    """Throughput of each parallel setting vs the exact sampler (trajectory, batch ``decoding_batch``).
    Trajectory vs frozen base latency is the ``latency`` part's."""
    from .decoding import round_ratios, setting_options, timed_rounds

    gb = generation_batch(backbone, cfg.decoding_batch, cfg.length, cfg.prompt)
    budget = int(gb["generate_mask"][0].sum())
    model = method_model(backbone, "trajectory", cfg.method_options)
    settings = list(dict.fromkeys(["exact", *cfg.decoding_settings]))
    samplers = {s: setting_options(s, budget).sampler(cfg.num_steps) for s in settings}
    fns = {s: (lambda s=s: generate(model, gb, samplers[s], torch.Generator().manual_seed(0))) for s in settings}
    _progress(f"decoding: {len(fns)} settings x {cfg.rounds} rounds (batch {cfg.decoding_batch}, "
              f"{budget} response tokens, T = {cfg.num_steps})")
    times = timed_rounds(fns, cfg.rounds)
    out: dict[str, Any] = {"response_tokens": budget, "settings": {}}
    for s in settings:
        t = times[s]
        with count_trunk_rows(unwrap_backbone(model)) as counts:
            fns[s]()
        out["settings"][s] = {**t, "samples_per_s": cfg.decoding_batch / t["median_s"],
                              "throughput_vs_exact": round_ratios(times["exact"], t), "calls": counts["calls"],
                              "passes_per_sample": counts["rows"] / cfg.decoding_batch}
    return out


def bench_latency(backbone, cfg: BenchConfig) -> dict[str, Any]:
    """Per setting: the trajectory method and the frozen base (timed twice: the noise floor,
    |base again / base - 1|) at batch ``batch``, ``latency_rounds`` interleaved rounds; ratios of
    medians with the per-round ratios' median and range; trunk passes per sample of each."""
    from .decoding import round_ratios, setting_options, timed_rounds

    gb = generation_batch(backbone, cfg.batch, cfg.length, cfg.prompt)
    budget = int(gb["generate_mask"][0].sum())
    models = {name: method_model(backbone, name, cfg.method_options) for name in ("base", "trajectory")}
    out: dict[str, Any] = {"batch": cfg.batch, "rounds": cfg.latency_rounds, "response_tokens": budget, "settings": {}}
    for s in cfg.latency_settings:
        sampler = setting_options(s, budget).sampler(cfg.num_steps)

        def fn(model, sampler=sampler):
            return lambda: generate(model, gb, sampler, torch.Generator().manual_seed(0))

        fns = {"trajectory": fn(models["trajectory"]), "base": fn(models["base"]), "base again": fn(models["base"])}
        _progress(f"latency at {s}: trajectory, base, base again x {cfg.latency_rounds} rounds (batch {cfg.batch})")
        times = timed_rounds(fns, cfg.latency_rounds)
        passes = {}
        for name in ("base", "trajectory"):
            with count_trunk_rows(unwrap_backbone(models[name])) as counts:
                fn(models[name])()
            passes[name] = counts["rows"] / cfg.batch
        out["settings"][s] = {**{f"{k}_ms_per_sample": 1000 * t["median_s"] / cfg.batch for k, t in times.items()},
                              "times": {k: t["times"] for k, t in times.items()}, "passes_per_sample": passes,
                              "trajectory_vs_base": round_ratios(times["trajectory"], times["base"]),
                              "noise": round_ratios(times["base again"], times["base"])}
    return out


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the suite, write ``bench.json`` and ``bench.md`` under ``cfg.output_dir``."""
    out = Path(cfg.output_dir)
    previous = json.loads((out / "bench.json").read_text()) if (out / "bench.json").is_file() else {}
    missing = [p for p in PARTS if p not in cfg.parts and p not in previous and p not in OPTIONAL_PARTS]
    if missing:
        raise ValueError(f"parts {missing} are neither run nor found in {out / 'bench.json'}")
    backbone = load_base(cfg.base)
    result: dict[str, Any] = {"config": to_dict(cfg), **provenance(0, base=cfg.base), "hardware": hardware()}
    runners = {"training": lambda: bench_training(backbone, cfg), "memory": lambda: bench_memory(cfg),
               "inference": lambda: bench_inference(backbone, cfg), "decoding": lambda: bench_decoding(backbone, cfg),
               "latency": lambda: bench_latency(backbone, cfg)}
    for part in PARTS:
        if part in cfg.parts or part in previous:
            result[part] = runners[part]() if part in cfg.parts else previous[part]
    # a part kept from a file that had itself kept it: the commit that measured it, not that file's
    result["parts_reused"] = {p: previous.get("parts_reused", {}).get(p, previous.get("git_commit"))
                              for p in PARTS if p not in cfg.parts and p in previous}
    result["targets"] = targets(result)
    atomic_write_json(out / "bench.json", result)
    atomic_write_text(out / "bench.md", markdown(result))
    return result


def hardware() -> dict[str, Any]:
    """The machine (``bench.decoding.hardware``: platform, CPUs, affinity, threads, OpenMP binding) and CUDA."""
    info = {**_decoding().hardware("cuda" if torch.cuda.is_available() else "cpu"), "cuda": torch.cuda.is_available()}
    info.pop("device")
    return info
