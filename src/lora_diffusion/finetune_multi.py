"""Multi-task fine-tuning: M task modules (and the router) on mixed-task batches, one trunk pass.

``lora-diffusion finetune --tasks sst2,trec [--router]`` (or ``--data-files a.jsonl,b.jsonl``)
trains the ``trajectory-composed`` method: every task's training rows, each encoded with its
own task's format and tagged with its task id, shuffled together by the one trainer, so every
batch mixes tasks. The loss is Eq. 23: each row's denoising loss through its own task's
modules plus, with a router, mean -log w_{j}(c) (``methods/compose.py``). ``init_adapters``
starts task modules from saved trajectory adapters; with ``freeze_adapters`` only the router
trains (router over frozen, separately trained adapters).

After training every task's reported split is scored under each composition mode: the
configured one, ``uniform`` and ``oracle`` (each row its own task's modules), and the
router's accuracy (argmax w = true task, at t = T with the response fully masked) is
recorded. ``result.json`` holds ``per_task[task][mode]`` and ``router_accuracy[task]``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, defaults_tree, to_dict
from .data.encoding import EncodedExamples, pad_collate
from .data.sources import Prepared, resolve_data, subsample
from .finetune import (
    FINISHED,
    OUTPUTS,
    build_method_model,
    encode_for,
    finetune,
    max_positions,
    set_prompt_attention,
)
from .hub import load_base
from .methods.persistence import load_method
from .methods.router import router_accuracy
from .prompt_cache import prompt_layout
from .runs import prepare_run
from .scoring import evaluate_encoded, write_predictions
from .utils.io import atomic_write_json
from .utils.repro import provenance

log = logging.getLogger(__name__)


def task_sources(cfg, tokenizer=None, positions: int = 512) -> dict[str, Prepared]:
    """{task name: its data}: registered tasks from ``data_root``, or users' files (named by
    stem; budgets measured on each file as for one file)."""
    common = dict(data_dir="", data_root=cfg.data_root, eval_split=cfg.eval_split, file_cfg=cfg.data,
                  metric=cfg.metric, fmt=cfg.response, tokenizer=tokenizer, max_positions=positions)
    out: dict[str, Prepared] = {}
    if cfg.tasks:
        for task in cfg.tasks:
            out[task] = resolve_data(task=task, data_file="", eval_file="", **common)
        return out
    evals = list(cfg.eval_files) or [""] * len(cfg.data_files)
    for path, eval_path in zip(cfg.data_files, evals):
        name = Path(path).stem.replace(".", "_")
        if name in out:
            raise ConfigError(f"data_files: two files are named {name!r}; task names come from file names",
                              field="data_files")
        out[name] = resolve_data(task="", data_file=path, eval_file=eval_path, **common)
    return out


def tagged(data: EncodedExamples, task_id: int, keep_label: bool = False) -> EncodedExamples:
    """The rows with ``task_ids`` (a scalar per row); labels dropped (the composed model has
    no classification head, and mixed tasks do not all carry one)."""
    rows = [{**{k: v for k, v in r.items() if keep_label or k != "label"}, "task_ids": torch.tensor(task_id)}
            for r in data.rows]
    return dataclasses.replace(data, rows=rows)


class MixedRows(torch.utils.data.Dataset):
    """Every task's tagged rows, one data set (the trainer's shuffle mixes the tasks)."""

    def __init__(self, parts: list[EncodedExamples]):
        self.rows = [r for part in parts for r in part.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.rows[i]


@contextmanager
def composition_mode(model, mode: str):
    """Temporarily serve ``model`` (a composed model) in another composition mode."""
    saved = model.cfg.mode
    model.cfg.mode = mode
    try:
        yield model
    finally:
        model.cfg.mode = saved


@torch.no_grad()
def router_accuracy_on(model, data: EncodedExamples, task_id: int, batch_size: int = 64) -> float:
    """Router accuracy on ``data``'s prompts at t = T (response region all [MASK])."""
    backbone = model.backbone
    hits = total = 0
    for lo in range(0, len(data), batch_size):
        batch = pad_collate([data[i] for i in range(lo, min(lo + batch_size, len(data)))], backbone.pad_token_id)
        x = batch["input_ids"].masked_fill(batch["generate_mask"].bool(), backbone.mask_token_id)
        steps = torch.full((x.shape[0],), backbone.diffusion.num_steps)
        with prompt_layout(backbone, batch["generate_mask"], batch["attention_mask"]):
            hidden = backbone.hidden_states(x, batch["attention_mask"], steps)
        w = model.router.weights(hidden, batch["instruction_mask"].bool())
        hits += router_accuracy(w, torch.full((x.shape[0],), task_id)) * x.shape[0]
        total += x.shape[0]
    return hits / max(total, 1)


def run_multitask_finetune(cfg, resume: bool = False, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train the composed model on every task's rows, then score each task under each mode."""
    state = prepare_run(cfg.output_dir, resume=resume, overwrite=overwrite, config=to_dict(cfg),
                        defaults=defaults_tree(type(cfg)), finished_marker=FINISHED, outputs=OUTPUTS,
                        command="finetune")
    if state == "finished":
        return {**json.loads((Path(cfg.output_dir) / FINISHED).read_text()), "already_finished": True}
    backbone = load_base(cfg.base)
    backbone.set_process(cfg.diffusion_steps, cfg.diffusion_schedule)
    set_prompt_attention(backbone, cfg.prompt_attention)
    cfg.sampling.sampler(backbone.diffusion.num_steps, cfg.prompt_attention)  # a bad combination: refused now
    tok, positions = backbone.tokenizer, max_positions(backbone)
    sources = task_sources(cfg, tok, positions)
    names = list(sources)
    options = {**cfg.method_options, "tasks": names}
    model, fingerprint = build_method_model(backbone, "trajectory-composed", options, seed=cfg.train.seed)
    for name, directory in cfg.init_adapters.items():
        if name not in model.adapters:
            raise ConfigError(f"init_adapters: no task {name!r} among {names}", field="init_adapters")
        source = load_method(directory, backbone)
        if source.method != "trajectory":
            raise ConfigError(f"init_adapters: {directory} holds a {source.method!r} method, not a trajectory "
                              "adapter", field="init_adapters")
        model.adapters[name].load_state_dict(source.adapter.state_dict())
    backbone.prompt_attention = cfg.prompt_attention  # loading an init adapter restored its own
    train_parts, dev_parts = [], {}
    for k, (name, prepared) in enumerate(sources.items()):
        rows = prepared.train[: cfg.max_train_rows or None]
        train_parts.append(tagged(encode_for(prepared, rows, tok, positions), k))
        if prepared.eval:
            dev_parts[name] = encode_for(prepared, subsample(prepared.eval, cfg.eval_rows), tok, positions)
    train = MixedRows(train_parts)
    summary = finetune(model, train, cfg.train, cfg.output_dir, fingerprint, resume=resume, overwrite=overwrite,
                       progress=progress, run_config=to_dict(cfg))
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return {"summary": summary}
    return _score(cfg, model, sources, dev_parts, summary, len(train))


def _score(cfg, model, sources: dict[str, Prepared], dev_parts: dict[str, EncodedExamples], summary,
           train_rows: int) -> dict[str, Any]:
    model.eval()
    out, seed = Path(cfg.output_dir), cfg.train.seed
    sampler = cfg.sampling.sampler(model.backbone.diffusion.num_steps, model.backbone.prompt_attention)
    modes = list(dict.fromkeys([model.cfg.mode, "uniform", "oracle"]))
    names = list(sources)
    per_task: dict[str, dict[str, Any]] = {}
    router_acc: dict[str, float] = {}
    for name, dev in dev_parts.items():
        k = names.index(name)
        per_task[name] = {}
        for mode in modes:
            data = tagged(dev, k, keep_label=True) if mode == "oracle" else dev
            with composition_mode(model, mode):
                scored = evaluate_encoded(model, data, sources[name].metric, sampler, cfg.sampling.batch_size, seed)
            write_predictions(out / f"predictions_{name}_{mode}.jsonl", scored.pop("predictions"))
            per_task[name][mode] = scored
        if model.router is not None:
            router_acc[name] = router_accuracy_on(model, dev, k)
    result = {"config": to_dict(cfg), "tasks": {n: p.describe() for n, p in sources.items()}, "train_rows": train_rows,
              "modes": modes, "per_task": per_task, "router_accuracy": router_acc or None, "summary": summary,
              "dev": None, "eval_split": "per task", **provenance(seed, base=cfg.base)}
    atomic_write_json(out / FINISHED, result)
    return result
