"""Decoding settings against quality (issue #16 items 3-4): trunk passes, query positions, wall
time and the task metric per sample for every decoding setting of a grid, beside the exact sampler.

    python -m lora_diffusion.bench.decoding --adapter DIR [--adapter DIR ...] --task squad \
        --data-root ../shared/data --rows 100 --batch-size 32 --output-dir OUT [--settings a,b] \
        [--rounds 5 --threads 1 --cpus 1 --note "what ran beside it"]
    python -m lora_diffusion.bench.decoding --aggregate DIR [DIR ...] --output reports/generation-speed.md

A setting is a ``+``-joined name (``SETTING_PARTS``): ``exact`` (the default event-driven ancestral
sampler at the adapter's T, the reference), ``low-confidence`` (LLaDA low-confidence remasking with
T = R, one reveal per step), ``threshold-X`` / ``fixed-K`` (parallel decoding), ``block-N``
(semi-AR blocks), ``approx-cache`` / ``exact-cache`` (prompt caching), ``prefix`` (prefix prompt
attention), ``margin``, ``steps-N`` (T), ``bf16`` (model calls under bfloat16 autocast). Every setting
runs under the adapter's prompt attention
(``prompt_attention`` in its adapter_config.json; full when absent).

Per adapter and setting: one generation over all rows (same rows, same seed) gives the metric
(``compute_metrics`` against the references as the tokenizer writes them, as ``evaluate`` does),
the trunk work (a forward hook on the trunk: calls, rows = passes, query positions), the wall
time of that run and the agreement with ``exact`` (decoded text per row; response tokens).
The throughput figures come separately: the settings are timed on one fixed batch (the first
``batch_size`` rows) in interleaved rounds after a warm-up call, with pinned threads; the median
and the range over rounds are reported. Written: ``decoding.json`` (with provenance),
``decoding.md`` (tables and the targets) and ``pareto.png`` (``decoding_report``). An interrupted
study resumes: each finished metric run and timed round is kept in ``OUT/.resume-<i>.json``
(dropped once the result is written; ignored when any input differs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from ..generation import GenerationOptions
from .harness import time_once
from .prompt_cache import count_positions

PARALLEL_GRID = ("threshold-0.9", "threshold-0.7", "threshold-0.5", "fixed-2", "fixed-4", "threshold-0.9+block-8",
                 "threshold-0.9+approx-cache", "exact+bf16", "threshold-0.9+bf16", "fixed-4+bf16")
RESUME_WARMUP_S = 30.0  # a resumed study warms up again only the settings faster than this per call
EXACT_CACHE = "threshold-0.9+exact-cache"  # only where the adapter was trained with prefix prompt attention
SETTING_PARTS = ("exact", "low-confidence", "threshold-X", "fixed-K", "block-N", "steps-N", "margin",
                 "approx-cache", "exact-cache", "prefix", "bf16")


def default_settings(prompt_attention: str = "full") -> list[str]:
    # fixed-1: one token per call with t on the adapter's own T grid (``low-confidence`` reads t
    # on a grid of R steps, so a trajectory adapter sees the phases of another T)
    return ["exact", "low-confidence", "fixed-1", *PARALLEL_GRID,
            *([EXACT_CACHE] if prompt_attention == "prefix" else [])]


def _number(part: str, prefix: str, kind: type, name: str):
    try:
        return kind(part[len(prefix):])
    except ValueError:
        raise ConfigError(f"settings: {part!r} in {name!r} needs a {kind.__name__} after {prefix!r}") from None


def setting_options(name: str, response_budget: int, prompt_attention: str = "full",
                    batch_size: int = 32, seed: int = 0) -> GenerationOptions:
    """The ``GenerationOptions`` of setting ``name`` (``+``-joined parts, ``SETTING_PARTS``) under
    ``prompt_attention`` (the ``prefix`` part overrides it)."""
    kw = {"prompt_attention": prompt_attention, "batch_size": batch_size, "seed": seed,
          **parse_setting(name, response_budget)}
    return GenerationOptions(**kw)


def parse_setting(name: str, response_budget: int) -> dict[str, Any]:
    """The ``GenerationOptions`` fields setting ``name`` changes (one-line ``ConfigError`` when unknown)."""
    kw: dict[str, Any] = {}
    for part in name.split("+"):
        if part == "exact":
            continue
        if part == "low-confidence":
            kw.update(remasking="low_confidence", num_steps=response_budget)
        elif part.startswith("threshold-"):
            kw.update(parallel="threshold", threshold=_number(part, "threshold-", float, name))
        elif part.startswith("fixed-"):
            kw.update(parallel="fixed", tokens_per_call=_number(part, "fixed-", int, name))
        elif part.startswith("block-"):
            kw["block_length"] = _number(part, "block-", int, name)
        elif part.startswith("steps-"):
            kw["num_steps"] = _number(part, "steps-", int, name)
        elif part in ("margin", "approx-cache", "exact-cache", "prefix", "bf16"):
            kw.update({"margin": {"remasking": "margin"}, "approx-cache": {"prompt_cache": "approximate"},
                       "exact-cache": {"prompt_cache": "exact"}, "prefix": {"prompt_attention": "prefix"},
                       "bf16": {"precision": "bf16"}}[part])
        else:
            raise ConfigError(f"settings: unknown part {part!r} in {name!r}; parts: {', '.join(SETTING_PARTS)}")
    return kw


def timed_rounds(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                 done: dict[str, list[float]] | None = None,
                 on_round: Callable[[dict[str, list[float]]], None] | None = None) -> dict[str, dict]:
    """Like ``harness.interleaved`` (round-robin after ``warmup`` calls each), keeping every round's
    seconds (``times``) so that per-round ratios can be formed. ``done``: the rounds an interrupted
    run finished (same names; resumed from there: the new process warms up again only the calls
    that took under ``RESUME_WARMUP_S`` seconds, where a first call's set-up is not lost in the
    noise; XSum's slowest settings take minutes a call); ``on_round(times)`` after each round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    if done and set(done) == set(fns) and len({len(t) for t in done.values()}) == 1:
        times = {name: list(done[name]) for name in fns}
    left = rounds - len(next(iter(times.values()), []))
    for name, fn in fns.items() if left > 0 else ():
        if times[name] and statistics.median(times[name]) >= RESUME_WARMUP_S:
            continue
        for _ in range(warmup):
            fn()
    for _ in range(left):
        for name, fn in fns.items():
            times[name].append(time_once(fn))
        if on_round:
            on_round(times)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs": len(t), "times": t}
            for name, t in times.items()}


def round_ratios(a: dict, b: dict) -> dict[str, float]:
    """Ratio of medians of two ``timed_rounds`` entries, and the median / range of the per-round ratios."""
    per = [x / y for x, y in zip(a["times"], b["times"])]
    return {"ratio": a["median_s"] / b["median_s"], "round_median": statistics.median(per),
            "round_min": min(per), "round_max": max(per)}


def prompt_attention_of(meta: dict[str, Any]) -> str:
    """The prompt attention an adapter was trained with (``full`` when it records none)."""
    for where in (meta, meta.get("task_format") or {}, meta.get("config") or {}):
        if where.get("prompt_attention"):
            return str(where["prompt_attention"])
    return "full"


def load_rows(pipe, task: str, data_root: str, data_file: str, metric: str, rows: int, response_length: int = 0):
    """The rows laid out as ``lora-diffusion evaluate`` lays them out (the adapter's own format on its
    task or on users' files), a fixed seeded sample of ``rows``; and the metric's name."""
    from ..data.encoding import ResponseFormat, tokenize_examples
    from ..data.records import DataFileConfig
    from ..data.sources import resolve_data, subsample
    from ..evaluate import with_labels

    prepared = resolve_data(task=task, data_dir="", data_root=data_root, data_file="", eval_file=data_file,
                            eval_split="", file_cfg=DataFileConfig(), metric=metric, fmt=ResponseFormat(),
                            tokenizer=pipe.tokenizer, need_train=False)
    saved = pipe.task_format
    same = bool(saved) and (saved.get("task") == task if task else not saved.get("task"))
    fmt = pipe.response_format() if same else prepared.format
    if response_length and prepared.kind != "classification":
        fmt = ResponseFormat(response_length, fmt.max_prompt_len, fmt.prompt_tail_tokens, fmt.end_token,
                             fmt.fill_token)
    words = prepared.label_words or (pipe.label_words if not task else {})
    examples = subsample(prepared.eval, rows)
    if words and not prepared.label_words:
        examples = with_labels(examples, words, data_file)
    return tokenize_examples(examples, pipe.tokenizer, fmt, words or None), prepared.metric


def _agreement(out: list[list[int]], ref: list[list[int]], texts: list[str], ref_texts: list[str]) -> dict:
    pairs = [(x, y) for a, b in zip(out, ref) for x, y in zip(a, b)]
    return {"agree_rows": sum(a == b for a, b in zip(texts, ref_texts)) / max(len(texts), 1),
            "agree_regions": sum(a == b for a, b in zip(out, ref)) / max(len(out), 1),
            "agree_tokens": sum(x == y for x, y in pairs) / max(len(pairs), 1)}


def study_adapter(adapter: str, task: str, data_root: str, data_file: str, metric: str, rows: int,
                  batch_size: int, settings: list[str] | None, rounds: int, seed: int = 0,
                  response_length: int = 0, base: str = "", device: str = "cpu",
                  resume_file: str | Path | None = None) -> dict[str, Any]:
    """Every setting on one adapter: the metric run (all rows) and the timed rounds (one batch).
    ``resume_file``: each finished metric run and timed round is kept there (``utils.resume``), and
    a run interrupted under the same inputs resumes from it (the rounds then span processes)."""
    from ..api import pipeline_for
    from ..backbone import unwrap_backbone
    from ..config import ConfigError
    from ..data.encoding import pad_collate, response_tokens
    from ..generation import generate
    from ..methods.persistence import read_adapter_config
    from ..metrics import compute_metrics, primary_metric
    from ..prompt_cache import check_support
    from ..scoring import tokenizer_view
    from ..utils.resume import ResumeFile

    meta = read_adapter_config(adapter)
    attention = prompt_attention_of(meta)
    pipe = pipeline_for(adapter, base)
    pipe.model.to(device)
    backbone = unwrap_backbone(pipe.model)
    data, metric = load_rows(pipe, task, data_root, data_file, metric, rows, response_length)
    budget = int(data[0]["generate_mask"].sum())
    names = list(settings or default_settings(attention))
    names = ["exact", *[n for n in names if n != "exact"]]  # the reference, always first
    configs = {n: pipe.sampler(setting_options(n, budget, attention, batch_size, seed)) for n in names}
    skipped = {}  # settings this model cannot run (a prompt cache on deep trajectory sites): named, not fatal
    for name, cfg in list(configs.items()):
        try:
            check_support(pipe.model, backbone, cfg.prompt_cache, cfg.prompt_attention)
        except ConfigError as err:
            skipped[name] = str(err)
            del configs[name]
            print(f"[decoding] {Path(adapter).name}: {name} skipped: {err}", flush=True)
    names = list(configs)
    refs = [tuple(tokenizer_view(pipe.tokenizer, r) for r in ex.answers) for ex in data.examples]
    batches = [pad_collate([data[i] for i in range(lo, min(lo + batch_size, len(data)))], backbone.pad_token_id)
               for lo in range(0, len(data), batch_size)]
    n, out, regions, texts = len(data), {}, {}, {}
    key = {"adapter": str(adapter), "files_sha256": meta.get("files_sha256"), "base": base, "task": task,
           "data_file": data_file, "metric": metric, "rows": n, "batch_size": batch_size, "seed": seed,
           "budget": budget, "device": device, "threads": torch.get_num_threads()}  # settings: kept by name
    resume = ResumeFile(resume_file, key) if resume_file else None
    for name, cfg in configs.items():
        if resume and (kept := resume.get("metric", name)):
            out[name], regions[name] = kept["entry"], kept["tokens"]
            texts[name] = pipe.decode(data, regions[name])
            print(f"[decoding] {Path(adapter).name}: {name} kept from an interrupted run", flush=True)
            continue
        print(f"[decoding] {Path(adapter).name}: {name} over {n} rows", flush=True)
        gen, stats, got = torch.Generator().manual_seed(seed), {}, []
        start = time.perf_counter()
        with count_positions(backbone) as counts:
            for batch in batches:
                ids = generate(pipe.model, batch, cfg, gen, cache_stats=stats).cpu()
                got += response_tokens(ids, batch["generate_mask"], None)
        seconds = time.perf_counter() - start
        regions[name], texts[name] = got, pipe.decode(data, got)
        scores = compute_metrics(metric, texts[name], refs)
        out[name] = {"options": {k: v for k, v in vars(setting_options(name, budget, attention)).items()
                                 if k not in ("batch_size", "seed")},
                     "calls_per_batch": counts["calls"] / len(batches), "passes_per_sample": counts["rows"] / n,
                     "passes_over_R": counts["rows"] / n / budget, "positions_per_sample": counts["positions"] / n,
                     "seconds_per_sample": seconds / n, "metrics": scores, "value": scores[primary_metric(metric)],
                     "mask_tokens": sum(t == backbone.mask_token_id for r in got for t in r), "cache": stats}
        if resume:
            resume.put("metric", name, {"entry": out[name], "tokens": got})
    for name in names:
        out[name].update(_agreement(regions[name], regions["exact"], texts[name], texts["exact"]))
        out[name]["delta"] = out[name]["value"] - out["exact"]["value"]
        out[name]["empty_rows"] = sum(not t.strip() for t in texts[name]) / n  # the end token revealed first
    fixed = batches[0]

    def fn(cfg):
        return lambda: generate(pipe.model, fixed, cfg, torch.Generator().manual_seed(seed))

    print(f"[decoding] {Path(adapter).name}: {len(names)} settings x {rounds} interleaved rounds "
          f"(batch {fixed['input_ids'].shape[0]})", flush=True)
    times = timed_rounds({name: fn(cfg) for name, cfg in configs.items()}, rounds,
                         done=resume.get("rounds", "times") if resume else None,
                         on_round=(lambda t: resume.put("rounds", "times", t)) if resume else None)
    rows_timed = int(fixed["input_ids"].shape[0])
    for name, t in times.items():
        out[name]["timing"] = {**t, "batch": rows_timed, "per_sample_s": t["median_s"] / rows_timed,
                               "samples_per_s": rows_timed / t["median_s"],
                               "speedup": round_ratios(times["exact"], t)}
    return {"adapter": str(adapter), "method": method_label(meta), "task": task or Path(data_file).name,
            "metric": metric, "primary": primary_metric(metric), "rows": n, "batch_size": batch_size,
            "response_budget": budget, "num_steps": backbone.diffusion.num_steps, "prompt_attention": attention,
            "mean_length": sum(int(r["input_ids"].shape[0]) for r in data.rows) / n, "settings": out,
            "skipped_settings": skipped}


def method_label(meta: dict[str, Any]) -> str:
    """The adapter's method, with its preset where it has one other than the paper's
    (``trajectory@deep-all``)."""
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    preset = config.get("preset")
    return f"{meta.get('method')}@{preset}" if preset and preset != "paper" else str(meta.get("method"))


def _attention_of(adapters: list[str]) -> str:
    """The prompt attention of the first adapter (the default grid depends on it)."""
    from ..methods.persistence import read_adapter_config

    return prompt_attention_of(read_adapter_config(adapters[0])) if adapters else "full"


def hardware(device: str = "cpu") -> dict[str, Any]:
    import platform

    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "affinity": affinity, "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "device": device,
            **{k.lower(): os.environ[k] for k in ("OMP_PROC_BIND", "OMP_PLACES") if k in os.environ}}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _adapter_base(adapter: str) -> str | None:
    """The base an adapter loads onto when no --base is given (recorded in its config)."""
    from ..methods.persistence import read_adapter_config

    return read_adapter_config(adapter).get("base_source")


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from ..utils.io import atomic_write_json, atomic_write_text, check_writable_dir
    from ..utils.repro import provenance
    from .decoding_report import markdown, pareto, study_targets

    out_dir = check_writable_dir(args.output_dir, "output_dir")
    if args.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [s for s in args.settings.split(",") if s] if args.settings else None
    extra = [s for s in args.extra_settings.split(",") if s]
    if extra:  # after the grid (or the settings given), each once
        settings = list(dict.fromkeys([*(settings or default_settings(_attention_of(args.adapter))), *extra]))
    for s in settings or []:
        parse_setting(s, 1)  # an unknown part: one line before any work
    resumes = [out_dir / f".resume-{i}.json" for i in range(len(args.adapter))]
    results = [study_adapter(a, args.task, args.data_root, args.data_file, args.metric, args.rows, args.batch_size,
                             settings, args.rounds, args.seed, args.response_length, args.base, args.device, kept)
               for a, kept in zip(args.adapter, resumes)]
    for r in results:
        r["targets"] = study_targets(r)
    result = {"command": "python -m lora_diffusion.bench.decoding " + " ".join(argv), "note": args.note,
              "config": {k: v for k, v in vars(args).items() if k not in ("aggregate", "output")},
              **provenance(args.seed, base=args.base or _adapter_base(args.adapter[0])), "hardware": hardware(args.device),
              "results": results}
    atomic_write_json(out_dir / "decoding.json", result)
    atomic_write_text(out_dir / "decoding.md", markdown(result))
    pareto(results, out_dir / "pareto.png")
    for kept in resumes:  # the result is whole: the pieces are no longer needed
        kept.unlink(missing_ok=True)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", action="append", default=[], help="an adapter directory (repeat for several)")
    p.add_argument("--base", default="", help="the adapters' base at another path")
    p.add_argument("--task", default="")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--data-file", default="", help="a users' JSONL / CSV / TSV file instead of a task")
    p.add_argument("--metric", default="", help="default: the task's (files: accuracy)")
    p.add_argument("--rows", type=int, default=100, help="a fixed seeded sample of this many rows (0: all)")
    p.add_argument("--response-length", type=int, default=0, help="free text: response budget R (0: the adapter's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--settings", default="", help="comma-separated setting names (default: the grid)")
    p.add_argument("--extra-settings", default="", help="comma-separated settings run after the grid (or --settings)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds on one batch")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--cpus", default="", help="pin the process to these CPUs, e.g. 1 or 0,1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default="", help="what else ran on the machine (stated in the report)")
    p.add_argument("--output-dir", default="")
    p.add_argument("--aggregate", nargs="+", default=[], help="study output directories to gather")
    p.add_argument("--bench", default="", help="with --aggregate: a bench.json holding the decoding part")
    p.add_argument("--output", default="", help="with --aggregate: the markdown report to write")
    args = p.parse_args(argv)
    try:
        if args.aggregate:
            from .decoding_report import aggregate

            if not args.output:
                p.error("--aggregate needs --output")
            print(f"written: {aggregate(args.aggregate, args.output, args.bench)}")
            return 0
        if not args.adapter or not args.output_dir or bool(args.task) == bool(args.data_file):
            p.error("give --adapter (one or more), --output-dir and exactly one of --task or --data-file")
        result = run(args, argv)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for r in result["results"]:
        for t in r["targets"]:
            print(f"{'met ' if t['met'] else 'MISS'}  {r['task']} / {r['method']}: {t['target']}: {t['detail']}")
    print(f"written: {Path(args.output_dir) / 'decoding.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
