import json

import torch

from lora_diffusion.cli import main
from lora_diffusion.config import TrainConfig
from lora_diffusion.data.classification import SST2, encode_examples, read_labelled_tsv
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.demo import resource
from lora_diffusion.diffusion.sampler import SamplerConfig
from lora_diffusion.finetune import build_method_model, finetune
from lora_diffusion.generation import generate
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone

SMALL = {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 16}


def _sst2(tokenizer, n):
    return encode_examples(read_labelled_tsv(resource("sst2_train_sample.tsv"), {0, 1})[:n], SST2, tokenizer, 32)


def _trained(tmp_path, steps=60):
    base = tiny_backbone("bert", seed=0)
    model, fp = build_method_model(base, "trajectory", SMALL)
    cfg = TrainConfig(max_steps=steps, lr=1e-2, warmup_steps=0, batch_size=16, micro_batch_size=16,
                      save_every=0, log_every=5, seed=0)
    summary = finetune(model, _sst2(base.tokenizer, 64), cfg, tmp_path / "run", fp, progress=False)
    return model, summary


def test_adapter_is_applied_at_every_model_call_with_that_steps_t(tmp_path):
    model, _ = _trained(tmp_path, steps=3)
    rows = [_sst2(model.backbone.tokenizer, 4)[i] for i in range(4)]
    batch = pad_collate(rows)
    batch["generate_mask"] = batch["generate_mask"] | (batch["instruction_mask"] & (torch.rand(batch["input_ids"].shape) < 0.5))
    batch["instruction_mask"] &= ~batch["generate_mask"]
    seen_adapter, seen_model = [], []
    original = model.adapter.forward

    def spy(h, steps, *a, **k):
        seen_adapter.append(steps.tolist())
        return original(h, steps, *a, **k)

    model.adapter.forward = spy
    hook = model.backbone.trunk.register_forward_hook(lambda *_: seen_model.append(1))
    generate(model, batch, SamplerConfig(num_steps=10, greedy=True), torch.Generator().manual_seed(0))
    hook.remove()
    assert len(seen_adapter) == len(seen_model) >= 5
    firsts = [s[0] for s in seen_adapter]
    assert firsts == sorted(firsts, reverse=True) and all(len(set(s)) == 1 for s in seen_adapter)


def test_generation_with_and_without_the_trained_adapter_differs(tmp_path):
    model, summary = _trained(tmp_path)
    dev = _sst2(model.backbone.tokenizer, 32)
    batch = pad_collate([dev[i] for i in range(32)])
    cfg = SamplerConfig(num_steps=20, greedy=True)
    with_adapter = generate(model, batch, cfg, torch.Generator().manual_seed(0))
    without = generate(model.backbone, batch, cfg, torch.Generator().manual_seed(0))
    g = batch["generate_mask"]
    assert not torch.equal(with_adapter[g], without[g])
    label_ids = set(dev.label_token_ids.values())
    assert sum(int(t) in label_ids for t in with_adapter[g]) > sum(int(t) in label_ids for t in without[g])
    acc = summary["accounting"]
    assert acc["bytes_on_disk"] > 4 * acc["trainable_parameters"] and acc["trainable_parameters"] > 0


def test_finetune_and_analyze_rank_cli(tmp_path, capsys):
    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    data = tmp_path / "sst2"
    data.mkdir()
    lines = (resource("sst2_train_sample.tsv")).read_text().splitlines()
    (data / "train.tsv").write_text("\n".join(lines[:41]) + "\n")
    (data / "dev.tsv").write_text("\n".join(lines[:1] + lines[41:57]) + "\n")
    opts = [f"method_options.{k}={json.dumps(v)}" for k, v in SMALL.items()]
    args = ["finetune", "--method", "trajectory", "--base", str(tmp_path / "base"), "--data-dir", str(data),
            "--output-dir", str(tmp_path / "ft"), "--steps", "2", "--quiet", "--set", "train.batch_size=8",
            "--set", "train.micro_batch_size=4", "--set", "train.save_every=1", "--set", "validation_rows=8"]
    for o in opts:
        args += ["--set", o]
    assert main(args) == 0
    result = json.loads((tmp_path / "ft" / "result.json").read_text())
    assert result["dev_rows"] == 16 and result["summary"]["steps"] == 2 and result["train_rows"] == 32
    assert result["validation"]["rows"] == 8 and 0 <= result["dev_denoising"]["accuracy"] <= 1
    out = tmp_path / "rank"
    assert main(["analyze-rank", "--adapter", str(tmp_path / "ft" / "adapter"), "--output-dir", str(out),
                 "--max-rows", "16"]) == 0
    ranks = json.loads((out / "effective_rank.json").read_text())
    assert set(ranks) == {"early", "mid", "late"} and (out / "effective_rank.png").is_file()
    for r in ranks.values():
        assert 0 <= r["effective_rank"] <= 32 and r["rows"] == 16
