"""One trunk pass for many tasks: a mixed batch equals each task's rows run alone."""

import pytest
import torch

from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.diffusion.sampler import SamplerConfig
from lora_diffusion.finetune import build_method_model
from lora_diffusion.generation import generate
from lora_diffusion.methods.multitask import MultiTaskTrajectoryModel
from lora_diffusion.methods.persistence import base_fingerprint, save_method
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import tiny_backbone

SMALL = {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}


def _task_models(base, n=3):
    models = []
    for k in range(n):
        model, _ = build_method_model(base, "trajectory", SMALL, seed=k)
        with torch.no_grad():
            for p in model.adapter.parameters():
                p.add_(0.2 * torch.randn_like(p))
        models.append(model.eval())
    return models


def _batch(tokenizer, task_ids):
    texts = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]
    rows = encode_examples([(texts[i % len(texts)], i % 2) for i in range(len(task_ids))], SST2, tokenizer)
    batch = pad_collate([rows[i] for i in range(len(task_ids))])
    batch["task_ids"] = torch.tensor(task_ids)
    return batch


def test_mixed_batch_equals_each_tasks_rows_alone(tokenizer):
    base = tiny_backbone("bert", seed=0)
    singles = _task_models(base)
    multi = MultiTaskTrajectoryModel(base, {f"t{k}": m.adapter for k, m in enumerate(singles)}).eval()
    ids = [2, 0, 1, 1, 0, 2, 2, 0]
    b = _batch(tokenizer, ids)
    steps = torch.tensor([90, 10, 50, 70, 30, 5, 99, 40])
    calls = []
    hook = base.trunk.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        mixed = multi(b["input_ids"], b["attention_mask"], steps, instruction_mask=b["instruction_mask"],
                      task_ids=b["task_ids"])
    hook.remove()
    assert len(calls) == 1  # one trunk pass for the mixed batch
    for k, single in enumerate(singles):
        rows = (b["task_ids"] == k).nonzero().squeeze(1)
        with torch.no_grad():
            alone = single(b["input_ids"][rows], b["attention_mask"][rows], steps[rows],
                           instruction_mask=b["instruction_mask"][rows])
        torch.testing.assert_close(mixed[rows], alone, rtol=1e-5, atol=1e-5)
    select = b["generate_mask"] | (torch.arange(b["input_ids"].shape[1]) == 2)  # 2 positions per row
    with torch.no_grad():
        picked = multi(b["input_ids"], b["attention_mask"], steps, select=select,
                       instruction_mask=b["instruction_mask"], task_ids=b["task_ids"])
    torch.testing.assert_close(picked, mixed[select], rtol=1e-5, atol=1e-5)


def test_mixed_generation_and_training_step(tokenizer, tmp_path):
    base = tiny_backbone("bert", seed=0)
    singles = _task_models(base, 2)
    fp = base_fingerprint(base)
    dirs = {}
    for k, m in enumerate(singles):
        dirs[f"t{k}"] = save_method(m, tmp_path / f"t{k}", fp)
    multi = MultiTaskTrajectoryModel.from_saved(dirs, base)
    b = _batch(tokenizer, [0, 1, 1, 0])
    cfg = SamplerConfig(num_steps=10, greedy=True)
    out = generate(multi, b, cfg, torch.Generator().manual_seed(0))
    assert not (out == base.mask_token_id).any()
    # a row's sample depends only on its own adapter: swap the other rows' tasks, row 0 is unchanged
    b2 = dict(b, task_ids=torch.tensor([0, 0, 0, 0]))
    again = generate(multi, b2, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(out[0], again[0])
    multi.train()
    loss, logs = DiffusionObjective(base.diffusion)(multi, b, torch.Generator().manual_seed(0))
    loss.backward()
    for name in ("t0", "t1"):
        assert multi.adapters[name].banks[0].down.weight.grad is not None
    assert "reg_t0_rank" in logs and all(p.grad is None for p in base.parameters())
    with pytest.raises(KeyError, match="no adapter for tasks"):
        multi.task_ids(["t0", "t9"])
