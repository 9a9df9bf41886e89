"""``lora-diffusion pretrain``: turn a pretrained encoder into a base masked-diffusion LM by
training it (all weights) with the diffusion loss on one or more text corpora, through the one
trainer. Several corpora are each cut into chunks on their own and pooled (mixed in proportion to
their sizes); validation takes ``eval_chunks / n`` chunks of each and logs the pooled NELBO and
each corpus's."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from .backbone import keep_first_layers
from .config import PretrainConfig, defaults_tree, require, to_dict
from .data.corpus import chunk_corpus, concat_chunks, corpus_name, read_corpus
from .evaluation import nelbo
from .hub import load_base, save_base
from .objective import DiffusionObjective
from .runs import clear_run, prepare_run
from .training.schedule import check_batch
from .training.trainer import Trainer, TrainingInterrupted
from .utils.io import atomic_write_json
from .utils.repro import base_digest, provenance

log = logging.getLogger(__name__)

FINISHED = "pretrain_summary.json"
OUTPUTS = (FINISHED, "model", "training_summary.json")
CLEARED = (*OUTPUTS, "training_history.json", "tensorboard")


def mixed_nelbo(per_corpus: dict[str, dict[str, float]]) -> dict[str, float]:
    """The validation NELBO of several corpora as one figure and per corpus: the overall
    ``nelbo_per_token`` is the token-weighted mean, sum_i n_i x_i / sum_i n_i (i.e. the NELBO of
    the pooled validation tokens), its ``ppl_bound`` exp of that; each corpus's figures are kept
    as ``<name>/<key>``. One corpus: its figures unchanged."""
    if len(per_corpus) == 1:
        return next(iter(per_corpus.values()))
    tokens = sum(r["tokens"] for r in per_corpus.values())
    mean = sum(r["nelbo_per_token"] * r["tokens"] for r in per_corpus.values()) / max(tokens, 1)
    out = {"nelbo_per_token": mean, "ppl_bound": math.exp(mean), "tokens": tokens}
    for name, r in per_corpus.items():
        out.update({f"{name}/{k}": v for k, v in r.items()})
    return out


def run_pretrain(cfg: PretrainConfig, resume: bool = False, progress: bool = True,
                 overwrite: bool = False) -> dict[str, Any]:
    """Train and save ``<output_dir>/model`` (HF format) with ``pretrain_summary.json``. The
    output directory is checked first, as for ``finetune`` (``runs.prepare_run``)."""
    out = Path(cfg.output_dir)
    state = prepare_run(out, resume=resume, overwrite=overwrite, config=to_dict(cfg), finished_marker=FINISHED,
                        outputs=OUTPUTS, command="pretrain", defaults=defaults_tree(PretrainConfig))
    if state == "finished":
        log.warning("%s: this run is already finished; nothing was trained or written", out)
        return {**json.loads((out / FINISHED).read_text()), "already_finished": True}
    names = [corpus_name(c) for c in cfg.corpus]
    require(len(set(names)) == len(names), "corpus", f"two corpora share a name: {names}")
    texts = {n: (read_corpus(c, "train", cfg.csv_column), read_corpus(c, "validation", cfg.csv_column))
             for n, c in zip(names, cfg.corpus)}  # a bad corpus fails before the model loads
    model = load_base(cfg.base, cfg.diffusion)
    if cfg.keep_layers:
        keep_first_layers(model, cfg.keep_layers)
    for p in model.parameters():
        p.requires_grad_(True)
    parts = {n: chunk_corpus(tr, model.tokenizer, cfg.seq_len, cfg.max_train_chunks) for n, (tr, _) in texts.items()}
    share = cfg.eval_chunks // len(names)  # validation chunks per corpus
    vals = {n: chunk_corpus(va, model.tokenizer, cfg.seq_len, share) for n, (_, va) in texts.items()}
    train = concat_chunks(list(parts.values()))
    check_batch(cfg.train, len(train))
    if overwrite:
        clear_run(out, CLEARED)
    for n in names:
        log.info("pretrain: %s: %d train chunks (%d tokens), %d validation chunks", n, len(parts[n]),
                 parts[n].num_tokens, len(vals[n]))

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        result = mixed_nelbo({n: nelbo(m, v, cfg.diffusion, batch_size=cfg.train.micro_batch_size,
                                       seed=cfg.train.seed) for n, v in vals.items()})
        m.train()
        return result

    trainer = Trainer(
        model, DiffusionObjective(cfg.diffusion), train, cfg.train, out,
        evaluate=evaluate, identity={"job": "pretrain", "base": cfg.base}, run_config=to_dict(cfg),
        progress=progress,
    )
    if resume:
        trainer.restore()
    if not trainer.history:
        start = evaluate(model)
        trainer.log({"step": 0, **{f"eval/{k}": v for k, v in start.items()}})
    summary = trainer.fit()
    try:
        final = evaluate(trainer.unwrapped)
        result = {
            **summary,
            "train_chunks": len(train),
            "train_tokens": train.num_tokens,
            "corpora": {n: {"source": c, "train_chunks": len(parts[n]), "train_tokens": parts[n].num_tokens,
                            "validation_chunks": len(vals[n])} for n, c in zip(names, cfg.corpus)},
            "validation": {"start": trainer.history[0], "final": final},
            "saved_to": str(out / "model"),
            **provenance(cfg.train.seed, base=cfg.base),
        }
        if trainer.accelerator.is_main_process:  # one writer under DDP
            save_base(trainer.unwrapped, out / "model",
                      extra_files={"pretrain_summary.json": json.dumps(result, indent=2, default=str)})
            result["saved_sha256"] = base_digest(out / "model")  # what runs on this base record as base_weights
            atomic_write_json(out / "pretrain_summary.json", result)
    except KeyboardInterrupt:
        raise TrainingInterrupted.after_training(trainer.step, out) from None
    trainer.accelerator.wait_for_everyone()
    return result
