"""``analyze-rank``, ``analyze-tsne``, ``params``, ``methods``, ``plot`` and ``bench``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError, load_config
from .common import add_common, flag_overrides, load_pairs


def _rank_parser(sub) -> None:
    p = sub.add_parser("analyze-rank", help="effective rank of a trained trajectory adapter's deltas per phase")
    p.add_argument("--adapter", required=True, help="directory saved by finetune (adapter_config.json)")
    p.add_argument("--base", default=None, help="base it was trained on (default: the recorded source)")
    p.add_argument("--data", default=None, help="SST-2 TSV to run over (default, when no --task / --data-file: "
                   "the packaged SST-2 dev)")
    p.add_argument("--task", default="", help="a registered task: its reported split (or --split)")
    p.add_argument("--data-dir", default="", help="the task's folder (default: <data-root>/<task folder>)")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--data-file", default="", help="a labelled JSONL / CSV / TSV file (prompt/response fields)")
    p.add_argument("--split", default="")
    p.add_argument("--over", choices=["steps", "rows", "factors"], default="steps",
                   help="steps (default; Eq. 28: the deltas over the steps of each phase, per example and "
                        "position), rows (one delta per example and position, stacked over the data set) or "
                        "factors (no data: the spectra of each trained module W_A W_B, factors.json)")
    p.add_argument("--max-rows", type=int, default=512)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--seed", type=int, default=0)


def _tsne_parser(sub) -> None:
    p = sub.add_parser("analyze-tsne", help="t-SNE of trained trajectory adapters' perturbations by phase and task")
    p.add_argument("--adapter", action="append", required=True, metavar="DIR",
                   help="a trajectory adapter (repeatable: one per task), run over its own task's reported split")
    p.add_argument("--base", default=None, help="base they were trained on (default: the recorded source)")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--max-rows", type=int, default=200)
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--seed", type=int, default=0)


def _params_parser(sub) -> None:
    p = sub.add_parser("params", help="trainable-parameter accounting of a method on a base")
    add_common(p)
    p.add_argument("--method", default="trajectory")
    p.add_argument("--base", default="minilm", help="a base, or 'bert-base' for a random bert-base-shaped model")


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="train step time, memory, generation latency and the performance targets")
    add_common(p)
    p.add_argument("--base")
    p.add_argument("--methods", help="comma-separated methods for the training figures")
    p.add_argument("--rounds", type=int, help="interleaved rounds of each generation timing")
    p.add_argument("--output-dir")


def _plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="PNG of a run's training loss and validation curve")
    p.add_argument("--history", required=True, help="training_history.json of a run")
    p.add_argument("--output", required=True, help="PNG path")
    p.add_argument("--title", default="")


def _methods_parser(sub) -> None:
    sub.add_parser("methods", help="list the registered methods")


def _rank_data(args: argparse.Namespace, pipe):
    """The rows to run over: a task split or a labelled file, laid out as the adapter was
    trained; else an SST-2 TSV (``--data``, default the packaged SST-2 dev)."""
    from ..data.classification import SST2, encode_examples, read_labelled_tsv
    from ..demo import resource

    if not (args.task or args.data_file):
        rows = read_labelled_tsv(args.data or resource("sst2_dev.tsv"), set(SST2.verbalizer))
        return encode_examples(rows[: args.max_rows], SST2, pipe.tokenizer)
    from ..data.encoding import ResponseFormat, tokenize_examples
    from ..data.records import DataFileConfig
    from ..data.sources import resolve_data
    from ..evaluate import with_labels

    prepared = resolve_data(task=args.task, data_dir=args.data_dir, data_root=args.data_root, data_file="",
                            eval_file=args.data_file, eval_split=args.split, file_cfg=DataFileConfig(), metric="",
                            fmt=ResponseFormat(), tokenizer=pipe.tokenizer, need_train=False)
    saved = pipe.task_format
    same = bool(saved) and (saved.get("task") == args.task if args.task else not saved.get("task"))
    words = prepared.label_words or (pipe.label_words if not args.task else {})
    examples = prepared.eval[: args.max_rows]
    if words and not prepared.label_words:
        examples = with_labels(examples, words, args.data_file)
    return tokenize_examples(examples, pipe.tokenizer, pipe.response_format() if same else prepared.format,
                             words or None)


def cmd_analyze_rank(args: argparse.Namespace) -> int:
    from ..analysis import analyze_rank, analyze_rank_steps
    from ..api import pipeline_for
    from ..methods.persistence import read_adapter_config
    from ..plots import plot_spectra
    from ..utils.io import atomic_write_json, check_writable_dir

    check_writable_dir(args.output_dir, "--output-dir")
    if args.max_rows < 1:
        raise ConfigError(f"--max-rows: must be >= 1, got {args.max_rows}")
    if args.task and args.data_file:
        raise ConfigError("--task and --data-file: give one")
    meta = read_adapter_config(args.adapter)
    if meta["method"] != "trajectory":
        raise ValueError(f"analyze-rank needs a trajectory adapter; {args.adapter} holds {meta['method']!r}")
    pipe = pipeline_for(args.adapter, args.base or "")
    if args.over == "factors":
        from ..analysis import factor_spectra

        modules = factor_spectra(pipe.model)
        atomic_write_json(Path(args.output_dir) / "factors.json", modules)
        for name, m in modules.items():
            print(f"{name:>14}: rank {m['rank']:>3} of {m['nominal_rank']} (s > {m['atol']:g}), effective rank "
                  f"{m['effective_rank']:.2f}, ||W_A W_B||_* {m['nuclear']:.3f}")
        return 0
    data = _rank_data(args, pipe)
    if args.over == "steps":
        result = analyze_rank_steps(pipe.model, data, max_rows=args.max_rows, seed=args.seed)
    else:
        result = analyze_rank(pipe.model, data, max_rows=args.max_rows, seed=args.seed)
    out = Path(args.output_dir)
    atomic_write_json(out / "effective_rank.json", result)
    plot_spectra(result, out / "effective_rank.png")
    for phase, r in result.items():
        print(f"{phase:>5}: effective rank {r['effective_rank']:.2f} over {args.over} (nominal {r['nominal_rank']}, "
              f"{r['rows']} rows)")
    return 0


def cmd_analyze_tsne(args: argparse.Namespace) -> int:
    from ..analysis_tsne import analyze_tsne, plot_tsne
    from ..api import pipeline_for
    from ..methods.persistence import read_adapter_config
    from ..utils.io import atomic_write_json, check_writable_dir

    check_writable_dir(args.output_dir, "--output-dir")
    if args.max_rows < 1 or args.perplexity <= 0:
        raise ConfigError("--max-rows must be >= 1 and --perplexity > 0")
    runs = []
    for directory in args.adapter:
        meta = read_adapter_config(directory)
        if meta["method"] != "trajectory":
            raise ValueError(f"analyze-tsne needs trajectory adapters; {directory} holds {meta['method']!r}")
        pipe = pipeline_for(directory, args.base or "")
        task = (pipe.task_format or {}).get("task") or ""
        rows = argparse.Namespace(task=task, data_file="", data_dir="", data_root=args.data_root, split="",
                                  data=None, max_rows=args.max_rows)
        runs.append((task or Path(directory).parent.name, pipe.model, _rank_data(rows, pipe)))
    result = analyze_tsne(runs, max_rows=args.max_rows, seed=args.seed, perplexity=args.perplexity)
    out = Path(args.output_dir)
    atomic_write_json(out / "tsne.json", {**result, "adapters": args.adapter})
    plot_tsne(result, out / "tsne.png")
    for task, s in result["silhouette_phase_within_task"].items():
        print(f"{task}: silhouette of the phases {s if s is None else round(s, 3)}")
    for phase, s in result["silhouette_task_within_phase"].items():
        print(f"{phase}: silhouette of the tasks {s if s is None else round(s, 3)}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from ..hub import load_base
    from ..methods import apply_method, method_config
    from ..methods.accounting import format_accounting, parameter_accounting

    if args.base == "bert-base":
        from transformers import BertConfig, BertForMaskedLM

        from ..backbone import DiffusionLM
        from ..testing import packaged_tokenizer

        backbone = DiffusionLM(BertForMaskedLM(BertConfig()), packaged_tokenizer())
    else:
        backbone = load_base(args.base)
    options = {k.split(".", 1)[1]: v for k, v in load_pairs(args.overrides).items() if k.startswith("method_options.")}
    model = apply_method(args.method, backbone, method_config(args.method, options))
    print(format_accounting(parameter_accounting(model)))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import BenchConfig, run_bench
    from ..utils.io import check_writable_dir

    overrides = load_pairs(args.overrides)
    overrides.update(flag_overrides(args, {"base": "base", "methods": "methods", "rounds": "rounds",
                                            "output_dir": "output_dir"}))
    cfg = load_config(BenchConfig, args.config, overrides)
    check_writable_dir(cfg.output_dir, "output_dir")
    result = run_bench(cfg)
    for t in result["targets"]:
        print(f"{'met ' if t['met'] else 'MISS'}  {t['target']}: {t['value']:.3f} (bound {t['bound']})")
    print(f"written: {Path(cfg.output_dir) / 'bench.md'}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from ..methods import get_method, registered_methods

    for name in registered_methods():
        print(f"{name:12s} {get_method(name).description}")
    return 0


def check_history(path: str) -> None:
    """A ``training_history.json``: a list of {"step": int, ...} entries; problems name the file."""
    from ..utils.io import read_json

    hist = read_json(path, what="--history")
    if not isinstance(hist, list):
        raise ValueError(f"{path}: expected a list of logged steps, got {type(hist).__name__}")
    for i, entry in enumerate(hist):
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            raise ValueError(f"{path}: entry {i}: field 'step': missing or not an integer")


def cmd_plot(args: argparse.Namespace) -> int:
    from ..plots import plot_history
    from ..utils.io import check_writable_file

    check_writable_file(args.output, "--output")
    check_history(args.history)
    print(plot_history(args.history, args.output, args.title))
    return 0


COMMANDS = {
    "analyze-rank": (_rank_parser, cmd_analyze_rank),
    "analyze-tsne": (_tsne_parser, cmd_analyze_tsne),
    "params": (_params_parser, cmd_params),
    "bench": (_bench_parser, cmd_bench),
    "plot": (_plot_parser, cmd_plot),
    "methods": (_methods_parser, cmd_methods),
}
