"""Command-line interface: ``lora-diffusion <command>``.

Every command reads its typed config (defaults <- ``--config file.yaml`` <- ``--set a.b=v``
overrides <- the explicit flags) and fails at load, naming the field, on a bad value.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .config import ConfigError, PretrainConfig, load_config


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with overrides of the defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _pretrain_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="train an encoder into a base masked-diffusion LM")
    _common(p)
    p.add_argument("--base", help="hub id, local model directory, or 'minilm' (default)")
    p.add_argument("--corpus", help="text file, directory with train/valid/test.txt, or HF dataset id")
    p.add_argument("--output-dir")
    p.add_argument("--steps", type=int, dest="train.max_steps")
    p.add_argument("--seed", type=int, dest="train.seed")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--cache", metavar="NAME", help="also install the trained base in the cache as "
                   "bases/NAME (the demo uses 'minilm-wt2' when present)")


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval-base", help="ELBO perplexity bound and masked-token accuracy of a base")
    p.add_argument("--base", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--max-chunks", type=int, default=0, help="0 = the whole split")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="write the figures as JSON here")


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job on embedded defaults (no network, no ../shared)")
    p.add_argument("--base", default=None, help="base diffusion LM (default: the cached base)")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N dev rows (0 = all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="method_options.KEY=VALUE",
                   help="override a trajectory option, e.g. --set method_options.ranks=[32,32,32]")


def _finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune one registered method on a task")
    _common(p)
    p.add_argument("--method", help="a registered method (see `lora-diffusion methods`)")
    p.add_argument("--base", help="base diffusion LM directory (e.g. runs/pretrain/model), hub id or 'minilm'")
    p.add_argument("--task", help="task name (sst2)")
    p.add_argument("--data-dir", help="directory with the task's train.tsv and dev.tsv (GLUE layout)")
    p.add_argument("--output-dir")
    p.add_argument("--steps", type=int, dest="train.max_steps")
    p.add_argument("--lr", type=float, dest="train.lr")
    p.add_argument("--seed", type=int, dest="train.seed")
    p.add_argument("--resume", action="store_true")


def _rank_parser(sub) -> None:
    p = sub.add_parser("analyze-rank", help="effective rank of a trained trajectory adapter's deltas per phase")
    p.add_argument("--adapter", required=True, help="directory saved by finetune (adapter_config.json)")
    p.add_argument("--base", default=None, help="base it was trained on (default: the recorded source)")
    p.add_argument("--data", default=None, help="SST-2 TSV to run over (default: the packaged SST-2 dev)")
    p.add_argument("--max-rows", type=int, default=512)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--seed", type=int, default=0)


def _params_parser(sub) -> None:
    p = sub.add_parser("params", help="trainable-parameter accounting of a method on a base")
    _common(p)
    p.add_argument("--method", default="trajectory")
    p.add_argument("--base", default="minilm", help="a base, or 'bert-base' for a random bert-base-shaped model")


def _study_parsers(sub) -> None:
    p = sub.add_parser("study", help="methods x seeds on one task (idempotent, resumable)")
    _common(p)
    p.add_argument("--base")
    p.add_argument("--task")
    p.add_argument("--data-dir")
    p.add_argument("--methods", help="comma-separated registered methods")
    p.add_argument("--seeds", help="comma-separated seeds (default 42..51)")
    p.add_argument("--num-seeds", type=int, help="use the first N of the seeds")
    p.add_argument("--steps", type=int, dest="train.max_steps")
    p.add_argument("--output-dir")
    r = sub.add_parser("report", help="markdown tables and PNG figures of a study")
    r.add_argument("--study", required=True, help="the study's output directory")
    r.add_argument("--output", required=True, help="directory for report.md and figures")
    r.add_argument("--study-command", default="", help="the exact command of the study, recorded in the report")


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="train step time, memory, generation latency and the performance targets")
    _common(p)
    p.add_argument("--base")
    p.add_argument("--methods", help="comma-separated methods for the training figures")
    p.add_argument("--rounds", type=int, help="interleaved rounds of each generation timing")
    p.add_argument("--output-dir")


def _plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="PNG of a run's training loss and validation curve")
    p.add_argument("--history", required=True, help="training_history.json of a run")
    p.add_argument("--output", required=True, help="PNG path")
    p.add_argument("--title", default="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lora-diffusion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _pretrain_parser(sub)
    _eval_parser(sub)
    _demo_parser(sub)
    _plot_parser(sub)
    _finetune_parser(sub)
    _rank_parser(sub)
    _params_parser(sub)
    _study_parsers(sub)
    _bench_parser(sub)
    sub.add_parser("methods", help="list the registered methods")
    return parser


def _flag_overrides(args: argparse.Namespace, names: dict[str, str]) -> dict[str, object]:
    out = {}
    for attr, key in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    return out


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import run_pretrain

    overrides = load_pairs(args.overrides)
    overrides.update(_flag_overrides(args, {
        "base": "base", "corpus": "corpus", "output_dir": "output_dir",
        "train.max_steps": "train.max_steps", "train.seed": "train.seed",
    }))
    cfg = load_config(PretrainConfig, args.config, overrides)
    result = run_pretrain(cfg, resume=args.resume, progress=not args.quiet)
    if args.cache:
        from .paths import cached_base

        print(f"installed in the cache: {cached_base(args.cache, install_from=result['saved_to'])}")
    print(json.dumps({k: result[k] for k in ("steps", "wall_time_s", "saved_to")}, indent=2))
    print(json.dumps(result["validation"], indent=2, default=str))
    return 0


def cmd_eval_base(args: argparse.Namespace) -> int:
    from .data.corpus import chunk_corpus, read_corpus
    from .evaluation import evaluate_base
    from .hub import load_base
    from .utils.io import atomic_write_json

    lines = read_corpus(args.corpus, args.split)
    model = load_base(args.base)
    data = chunk_corpus(lines, model.tokenizer, args.seq_len, args.max_chunks)
    result = {"base": args.base, "corpus": args.corpus, "split": args.split, "chunks": len(data),
              **evaluate_base(model, data, model.diffusion, batch_size=args.batch_size, seed=args.seed)}
    print(json.dumps(result, indent=2))
    if args.output:
        atomic_write_json(args.output, result)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    options = {}
    for key, value in load_pairs(args.overrides).items():
        if not key.startswith("method_options."):
            raise ConfigError(f"{key}: the demo only takes method_options.* overrides")
        options[key.split(".", 1)[1]] = value
    run_demo(base=args.base, output_dir=args.output_dir, steps=args.steps, seed=args.seed,
             eval_limit=args.eval_limit, method_options=options)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, run_finetune

    overrides = load_pairs(args.overrides)
    overrides.update(_flag_overrides(args, {
        "method": "method", "task": "task", "base": "base", "data_dir": "data_dir", "output_dir": "output_dir",
        "train.max_steps": "train.max_steps", "train.lr": "train.lr", "train.seed": "train.seed",
    }))
    cfg = load_config(FinetuneConfig, args.config, overrides)
    result = run_finetune(cfg, resume=args.resume, progress=not args.quiet)
    if "dev" not in result:  # a non-main DDP process
        return 0
    acc = result["summary"]["accounting"]
    print(json.dumps({"method": cfg.method, "dev_generation_accuracy": result["dev"]["accuracy"],
                      "trainable_parameters": acc["trainable_parameters"],
                      "percent_of_base": round(acc["percent_of_base"], 3),
                      "bytes_on_disk": acc.get("bytes_on_disk"), "output_dir": cfg.output_dir}, indent=2))
    return 0


def cmd_analyze_rank(args: argparse.Namespace) -> int:
    from .analysis import analyze_rank
    from .data.classification import SST2, encode_examples, read_labelled_tsv
    from .demo import resource
    from .methods.persistence import load_method
    from .plots import plot_spectra
    from .utils.io import atomic_write_json

    model = load_method(args.adapter, args.base)
    if model.method != "trajectory":
        raise ValueError(f"analyze-rank needs a trajectory adapter; {args.adapter} holds {model.method!r}")
    rows = read_labelled_tsv(args.data or resource("sst2_dev.tsv"), set(SST2.verbalizer))
    data = encode_examples(rows, SST2, model.backbone.tokenizer)
    result = analyze_rank(model, data, max_rows=args.max_rows, seed=args.seed)
    out = Path(args.output_dir)
    atomic_write_json(out / "effective_rank.json", result)
    plot_spectra(result, out / "effective_rank.png")
    for phase, r in result.items():
        print(f"{phase:>5}: effective rank {r['effective_rank']:.2f} (nominal {r['nominal_rank']}, {r['rows']} rows)")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from .hub import load_base
    from .methods import apply_method, method_config
    from .methods.accounting import format_accounting, parameter_accounting

    if args.base == "bert-base":
        from transformers import BertConfig, BertForMaskedLM

        from .backbone import DiffusionLM
        from .testing import packaged_tokenizer

        backbone = DiffusionLM(BertForMaskedLM(BertConfig()), packaged_tokenizer())
    else:
        backbone = load_base(args.base)
    options = {k.split(".", 1)[1]: v for k, v in load_pairs(args.overrides).items() if k.startswith("method_options.")}
    model = apply_method(args.method, backbone, method_config(args.method, options))
    print(format_accounting(parameter_accounting(model)))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from .study import StudyConfig, run_study

    overrides = load_pairs(args.overrides)
    overrides.update(_flag_overrides(args, {
        "base": "base", "task": "task", "data_dir": "data_dir", "methods": "methods", "seeds": "seeds",
        "output_dir": "output_dir", "train.max_steps": "train.max_steps",
    }))
    cfg = load_config(StudyConfig, args.config, overrides)
    if args.num_seeds:
        cfg.seeds = cfg.seeds[: args.num_seeds]
    results = run_study(cfg, progress=not args.quiet)
    print(f"{len(results)} runs complete under {cfg.output_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.study, args.output, args.study_command))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench

    overrides = load_pairs(args.overrides)
    overrides.update(_flag_overrides(args, {"base": "base", "methods": "methods", "rounds": "rounds",
                                            "output_dir": "output_dir"}))
    cfg = load_config(BenchConfig, args.config, overrides)
    result = run_bench(cfg)
    for t in result["targets"]:
        print(f"{'met ' if t['met'] else 'MISS'}  {t['target']}: {t['value']:.3f} (bound {t['bound']})")
    print(f"written: {Path(cfg.output_dir) / 'bench.md'}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .methods import get_method, registered_methods

    for name in registered_methods():
        print(f"{name:12s} {get_method(name).description}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_history

    print(plot_history(args.history, args.output, args.title))
    return 0


def load_pairs(pairs: list[str]) -> dict[str, object]:
    import yaml

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


COMMANDS = {"pretrain": cmd_pretrain, "eval-base": cmd_eval_base, "demo": cmd_demo, "plot": cmd_plot,
            "finetune": cmd_finetune, "analyze-rank": cmd_analyze_rank, "methods": cmd_methods, "params": cmd_params,
            "study": cmd_study, "report": cmd_report, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import transformers

    transformers.logging.set_verbosity_error()
    for noisy in ("transformers", "accelerate", "datasets", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"lora-diffusion {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
