"""``lora-diffusion pretrain``: turn a pretrained encoder into a base masked-diffusion LM by
training it (all weights) with the diffusion loss on a text corpus, through the one trainer."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from .backbone import keep_first_layers
from .config import PretrainConfig, defaults_tree, to_dict
from .data.corpus import chunk_corpus, read_corpus
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
    train_lines = read_corpus(cfg.corpus, "train")  # bad corpus fails before the model loads
    val_lines = read_corpus(cfg.corpus, "validation")
    model = load_base(cfg.base, cfg.diffusion)
    if cfg.keep_layers:
        keep_first_layers(model, cfg.keep_layers)
    for p in model.parameters():
        p.requires_grad_(True)
    train = chunk_corpus(train_lines, model.tokenizer, cfg.seq_len, cfg.max_train_chunks)
    val = chunk_corpus(val_lines, model.tokenizer, cfg.seq_len, cfg.eval_chunks)
    check_batch(cfg.train, len(train))
    if overwrite:
        clear_run(out, CLEARED)
    log.info("pretrain: %d train chunks (%d tokens), %d validation chunks", len(train), train.num_tokens, len(val))

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        result = nelbo(m, val, cfg.diffusion, batch_size=cfg.train.micro_batch_size, seed=cfg.train.seed)
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
