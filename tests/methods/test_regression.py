"""Expected-loss regression: 4 seeded optimiser steps of every method on a tiny model through
the one trainer reproduce recorded losses (recorded on the CPU build of torch 2.13.0)."""

import json

import pytest

from lora_diffusion.config import TrainConfig
from lora_diffusion.data.classification import SST2, encode_examples, read_labelled_tsv
from lora_diffusion.demo import resource
from lora_diffusion.finetune import build_method_model, finetune
from lora_diffusion.testing import tiny_backbone

OPTIONS = {"lora": {"rank": 4, "alpha": 8.0}, "adapter": {"bottleneck": 8}, "prefix": {"num_prefix": 4},
           "trajectory": {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}}
RECORDED = {
    "adapter": None,
    "bitfit": None,
    "full": None,
    "lora": None,
    "prefix": None,
    "trajectory": None,
}


def run_method(name, out):
    base = tiny_backbone("bert", seed=0)
    data = encode_examples(read_labelled_tsv(resource("sst2_train_sample.tsv"), {0, 1})[:32], SST2, base.tokenizer, 32)
    model, fp = build_method_model(base, name, OPTIONS.get(name))
    cfg = TrainConfig(max_steps=4, lr=1e-2, warmup_steps=0, batch_size=8, micro_batch_size=4, save_every=0,
                      log_every=1, seed=0)
    finetune(model, data, cfg, out, fp, progress=False)
    return [h["loss"] for h in json.loads((out / "training_history.json").read_text())]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_expected_losses(name, tmp_path):
    assert run_method(name, tmp_path) == pytest.approx(RECORDED[name], rel=1e-4)
