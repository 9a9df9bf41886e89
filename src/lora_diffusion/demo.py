"""``lora-diffusion demo``: the main job on embedded defaults, offline, in minutes on a CPU.

1. base: the cached pretrained base diffusion LM (``lora-diffusion pretrain --cache``), or a
   short pretrain of all-MiniLM-L6-v2 on the packaged WikiText-2 excerpt when none is cached;
2. task: SST-2 as generation of the label word, from the packaged sample (resources/SOURCES.md);
3. fine-tune with LoRA-Diffusion (trajectory adapters, frozen base) through the one trainer,
   then compare generation accuracy on SST-2 dev with the
   untuned base's.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

from .config import PretrainConfig, TrainConfig, to_dict
from .data.classification import SST2, encode_examples, read_labelled_tsv
from .finetune import build_method_model, finetune
from .generation import generation_accuracy
from .hub import load_base
from .paths import cached_base, default_cache_dir
from .pretrain import run_pretrain
from .training.checkpoint import list_checkpoints
from .utils.io import atomic_write_json, check_writable_dir
from .utils.repro import provenance

log = logging.getLogger(__name__)

DEMO_PRETRAIN_STEPS = 120
DEMO_FINETUNE_STEPS = 600
DEMO_METHOD = "trajectory"
DEMO_METHOD_OPTIONS: dict[str, Any] = {}  # the paper's defaults: ranks 64/32/8, k = 2, FiLM on the trunk
DEMO_LR = 1e-3
FULL_BASE = "minilm-wt2"
DEMO_BASE = "minilm-demo"


def resource(name: str) -> Path:
    return Path(str(resources.files("lora_diffusion") / "resources" / name))


def resolve_demo_base(base: str | None) -> tuple[str, str]:
    """(path, what happened): an explicit base, else a cached one, else a short pretrain."""
    if base:
        return base, f"base given: {base}"
    for name in (FULL_BASE, DEMO_BASE):
        found = cached_base(name)
        if found is not None:
            return str(found), f"cached base {name!r} at {found}"
    target = default_cache_dir() / "pretrain-demo"
    print(f"[demo] no cached base diffusion LM: running a short pretrain ({DEMO_PRETRAIN_STEPS} steps "
          f"of all-MiniLM-L6-v2 on the packaged WikiText-2 excerpt) into {target}")
    cfg = PretrainConfig(
        base="minilm", corpus=str(resource("wikitext2_train_head.txt.gz")), output_dir=str(target),
        seq_len=128, eval_chunks=32,
        train=TrainConfig(max_steps=DEMO_PRETRAIN_STEPS, lr=3e-4, warmup_steps=12, batch_size=16,
                          micro_batch_size=16, save_every=40, log_every=10, seed=0),
    )
    if not (target / "pretrain_summary.json").is_file():  # else finished before, only its caching was lost
        resume = bool(list_checkpoints(target / "checkpoints"))
        run_pretrain(cfg, resume=resume, overwrite=not resume)
    final = cached_base(DEMO_BASE, install_from=target / "model")
    return str(final), f"short pretrain ({DEMO_PRETRAIN_STEPS} steps) cached at {final}"


def run_demo(base: str | None = None, output_dir: str | None = None, steps: int | None = None,
             seed: int = 0, eval_limit: int = 0, method_options: dict[str, Any] | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    out = Path(output_dir or "runs/demo")
    check_writable_dir(out, "--output-dir")
    if (out / "result.json").exists() or list_checkpoints(out / "checkpoints"):  # the demo replaces only its own
        raise FileExistsError(f"{out} holds a finetune run, not a demo's output: choose another --output-dir")
    base_path, base_note = resolve_demo_base(base)
    model = load_base(base_path)
    labels = set(SST2.verbalizer)
    train = encode_examples(read_labelled_tsv(resource("sst2_train_sample.tsv"), labels), SST2, model.tokenizer)
    dev_rows = read_labelled_tsv(resource("sst2_dev.tsv"), labels)
    dev = encode_examples(dev_rows[:eval_limit] if eval_limit else dev_rows, SST2, model.tokenizer)
    print(f"[demo] {base_note}; SST-2: {len(train)} train rows (packaged sample), {len(dev)} dev rows")
    before = generation_accuracy(model, dev, seed=seed)
    print(f"[demo] untuned base: generation accuracy {before['accuracy']:.3f} "
          f"(valid label words {before['valid_label_rate']:.3f})")

    model, fingerprint = build_method_model(model, DEMO_METHOD, {**DEMO_METHOD_OPTIONS, **(method_options or {})}, seed=seed)
    cfg = TrainConfig(max_steps=steps or DEMO_FINETUNE_STEPS, lr=DEMO_LR, warmup_steps=15, batch_size=16,
                      micro_batch_size=16, save_every=0, log_every=10, seed=seed)
    task_format = {"task": "sst2", "name": "sst2", "kind": "classification", "metric": "accuracy",
                   "template": SST2.template, "label_words": {str(k): v for k, v in SST2.verbalizer.items()},
                   "response": to_dict(train.format)}
    # the demo regenerates its own output directory on every run (runs/demo by default)
    summary = finetune(model, train, cfg, out, fingerprint, run_config={"base": base_path}, overwrite=True,
                       adapter_extra={"task_format": task_format})
    after = generation_accuracy(model, dev, seed=seed)
    method = DEMO_METHOD
    result = {
        "base": base_path, "base_note": base_note, "method": method, "task": "sst2",
        "train_rows": len(train), "dev_rows": len(dev), "steps": summary["steps"],
        "untuned": before, "tuned": after, "train_time_s": summary["wall_time_s"],
        "accounting": summary["accounting"],
        "wall_time_s": time.perf_counter() - start, "train_config": to_dict(cfg),
        "diffusion": to_dict(model.backbone.diffusion),
        **provenance(seed, base=base_path),
    }
    atomic_write_json(out / "demo_summary.json", result)
    print(
        f"[demo] fine-tuned ({method}, {summary['steps']} steps, {summary['wall_time_s']:.0f}s): "
        f"generation accuracy {after['accuracy']:.3f} on SST-2 dev vs {before['accuracy']:.3f} untuned\n"
        f"[demo] total {result['wall_time_s']:.0f}s; summary in {out / 'demo_summary.json'}"
    )
    return result
