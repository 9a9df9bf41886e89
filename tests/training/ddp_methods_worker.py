"""One process of the DDP method matrix (tests/training/test_ddp_methods.py): train each named
model for 4 steps from the same seeded start, and again with an interruption after step 1 and
a resume; write the losses and the trained tensors (rank 0). Run alone = the single-process
reference; under torch.distributed env vars = one rank of the 2-process run."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from lora_diffusion.config import TrainConfig
from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.finetune import build_method_model
from lora_diffusion.methods.multitask import MultiTaskTrajectoryModel
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import packaged_tokenizer, tiny_backbone
from lora_diffusion.training.trainer import Trainer, TrainingInterrupted

torch.set_num_threads(1)
# lambda_rank = 0: the nuclear norm's gradient sum_i u_i v_i^T is ill-conditioned where W_A is
# nearly rank-deficient (it starts at 0 and Adam's first step is a sign matrix): singular values
# of ~1e-7 have rounding-dependent directions, so a different (equally exact) order of summing
# the micro-batch gradients moves W_A by O(lr) (seen at 6e-3 with lr 1e-2 even with
# ``nuclear_norm``'s round-off tolerance). lambda_orth (smooth) keeps its default.
OPTIONS = {"lora": {"rank": 4, "alpha": 8.0}, "adapter": {"bottleneck": 8}, "prefix": {"num_prefix": 4},
           "trajectory": {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12, "lambda_rank": 0.0}}
VARIANTS = {"trajectory-deep": {"deep_layers": [0], "deep_rank": 4, "beta_rank": 3, "pool": "attention"},
            "trajectory-mix": {"read": "mix", "shared_bank": True, "ranks": [4, 4, 4]}}
TEXTS = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]


def backbone():
    base = tiny_backbone("bert", seed=0)
    for m in base.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # dropout draws would differ between one process and two
    return base


def build(name: str):
    if name == "multitask":
        base = backbone()
        adapters = {f"t{k}": build_method_model(base, "trajectory", OPTIONS["trajectory"], seed=k)[0].adapter
                    for k in range(2)}
        return MultiTaskTrajectoryModel(base, adapters)
    if name in VARIANTS:
        return build_method_model(backbone(), "trajectory", {**OPTIONS["trajectory"], **VARIANTS[name]}, seed=0,
                                  num_labels=2)[0]
    return build_method_model(backbone(), name, OPTIONS.get(name), seed=0, num_labels=2)[0]


def rows(name: str):
    data = list(encode_examples([(TEXTS[i % 8], i % 2) for i in range(16)], SST2, packaged_tokenizer()))
    if name == "multitask":  # task of each row; a micro-batch may hold one task only
        data = [{k: v for k, v in r.items() if k != "label"} | {"task_ids": torch.tensor((i // 3) % 2)}
                for i, r in enumerate(data)]
    return data


def interrupt(model):
    raise KeyboardInterrupt


def train(name: str, out: Path, batch: int, micro: int, resume: bool) -> Trainer:
    cfg = TrainConfig(max_steps=4, lr=1e-2, warmup_steps=1, batch_size=batch, micro_batch_size=micro,
                      save_every=1 if resume else 0, eval_every=2 if resume else 0, log_every=1, seed=0)
    model = build(name)
    data = rows(name)
    trainer = Trainer(model, DiffusionObjective(model.backbone.diffusion), data, cfg, out, collate=pad_collate,
                      evaluate=interrupt if resume else None, progress=False)
    if not resume:
        trainer.fit()
        return trainer
    try:
        trainer.fit()  # interrupted at step 2, before its checkpoint: resumes from step 1
    except TrainingInterrupted:
        pass
    cfg.eval_every = 0
    model = build(name)
    again = Trainer(model, DiffusionObjective(model.backbone.diffusion), data, cfg, out, collate=pad_collate,
                    progress=False)
    again.fit(resume=True)
    return again


def main() -> None:
    out, batch, micro, names = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
    for name in names:
        for resume in (False, True):
            target = out / f"{name}-{'resumed' if resume else 'straight'}"
            trainer = train(name, target, batch, micro, resume)
            if trainer.accelerator.is_main_process:
                state = {n: p.detach().contiguous() for n, p in trainer.unwrapped.named_parameters() if p.requires_grad}
                save_file(state, str(target / "trained.safetensors"))
                losses = [h["loss"] for h in trainer.history if "loss" in h]
                (target / "losses.json").write_text(json.dumps({"losses": losses, "world": trainer.accelerator.num_processes}))
            trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
