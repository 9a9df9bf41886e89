"""Training and sampling with another T or noise schedule than the base's (the T and schedule
ablations of issue #14): recorded with the adapter, loaded back with it."""

import json

import pytest

from lora_diffusion.config import ConfigError
from lora_diffusion.finetune import FinetuneConfig
from lora_diffusion.testing import tiny_backbone

OPTIONS = {"ranks": [4, 4, 2], "time_dim": 8, "cond_dim": 8}
TEXTS = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]


def test_steps_and_schedule_ablation_are_recorded_and_reloaded(tmp_path):
    """finetune's diffusion_steps / diffusion_schedule train with another T and schedule than the
    base's; the adapter records them and loads back with them."""
    from lora_diffusion.config import from_dict
    from lora_diffusion.finetune import run_finetune
    from lora_diffusion.hub import save_base
    from lora_diffusion.methods.persistence import load_method

    save_base(tiny_backbone("bert", hidden=32), tmp_path / "base")
    rows = [{"prompt": f"{w} is", "response": ["yes", "no"][i % 2]} for i, w in enumerate(TEXTS * 2)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = from_dict(FinetuneConfig, {
        "base": str(tmp_path / "base"), "method": "trajectory", "method_options": OPTIONS,
        "data_file": str(tmp_path / "train.jsonl"), "output_dir": str(tmp_path / "run"),
        "diffusion_steps": 20, "diffusion_schedule": "cosine",
        "train": {"max_steps": 2, "warmup_steps": 0, "batch_size": 8, "micro_batch_size": 8, "save_every": 0}})
    run_finetune(cfg, progress=False)
    model = load_method(tmp_path / "run" / "adapter", str(tmp_path / "base"))
    assert model.backbone.diffusion.num_steps == 20 and model.backbone.diffusion.schedule == "cosine"
    assert model.adapter.num_steps == 20
    with pytest.raises(ConfigError, match="diffusion_schedule"):
        FinetuneConfig(diffusion_schedule="bogus")
