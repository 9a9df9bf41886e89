"""An interrupted evaluation resumes batch by batch (``generation.reverse_run`` with a
``utils.resume.ResumeFile``) and gives the uninterrupted run's outputs, the sampler's random
stream included; ``run_finetune`` drops the kept batches once ``result.json`` is written."""

import json

import pytest
import torch

import lora_diffusion.generation as generation
from lora_diffusion.config import from_dict
from lora_diffusion.data.encoding import ResponseFormat, tokenize_examples
from lora_diffusion.data.examples import Example
from lora_diffusion.diffusion.sampler import SamplerConfig
from lora_diffusion.finetune import FinetuneConfig, run_finetune
from lora_diffusion.hub import save_base
from lora_diffusion.methods.persistence import weights_digest
from lora_diffusion.testing import tiny_backbone
from lora_diffusion.utils.resume import ResumeFile

PROMPTS = ["the film was", "a song is", "this book", "that play", "our trip", "the meal", "a walk", "the sea",
           "one cat", "two dogs"]


def test_an_interrupted_reverse_run_resumes_with_the_same_outputs(tokenizer, tmp_path, monkeypatch):
    model = tiny_backbone("bert", hidden=32, seed=0)
    data = tokenize_examples([Example(p, "") for p in PROMPTS], tokenizer, ResponseFormat(6, 16))
    cfg = SamplerConfig(num_steps=12, greedy=False, temperature=1.0)  # sampled tokens: the random stream matters
    whole = generation.reverse_run(model, data, cfg, batch_size=3, seed=5)
    real, calls = generation.generate, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    kept = ResumeFile(tmp_path / "r.json", {"case": 1})
    monkeypatch.setattr(generation, "generate", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        generation.reverse_run(model, data, cfg, batch_size=3, seed=5, resume=kept, section="dev")
    assert sorted(json.loads((tmp_path / "r.json").read_text())["data"]["dev"]) == ["0", "3"]
    calls.clear()
    monkeypatch.setattr(generation, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = generation.reverse_run(model, data, cfg, batch_size=3, seed=5,
                                   resume=ResumeFile(tmp_path / "r.json", {"case": 1}), section="dev")
    assert len(calls) == 2  # batches at rows 6 and 9 only
    assert again.regions == whole.regions and again.seconds > 0
    other = generation.reverse_run(model, data, cfg, batch_size=3, seed=5,
                                   resume=ResumeFile(tmp_path / "r.json", {"case": 2}), section="dev")
    assert len(calls) == 2 + 4 and other.regions == whole.regions  # another key: every batch again


def test_weights_digest_follows_the_trained_tensors():
    from lora_diffusion.methods import apply_method, method_config

    model = apply_method("lora", tiny_backbone("bert", hidden=32, seed=0), method_config("lora", {"rank": 2}))
    before = weights_digest(model)
    assert weights_digest(model) == before
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).add_(1e-3)
    assert weights_digest(model) != before


def test_a_finished_run_leaves_no_kept_batches(tmp_path):
    save_base(tiny_backbone("bert", hidden=32), tmp_path / "base")
    rows = [{"prompt": f"{w} was", "response": ["good", "bad"][i % 2]} for i, w in enumerate(PROMPTS * 2)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = from_dict(FinetuneConfig, {
        "base": str(tmp_path / "base"), "method": "bitfit", "data_file": str(tmp_path / "train.jsonl"),
        "eval_file": str(tmp_path / "train.jsonl"), "output_dir": str(tmp_path / "run"),
        "train": {"max_steps": 2, "warmup_steps": 0, "batch_size": 4, "micro_batch_size": 4, "save_every": 0}})
    result = run_finetune(cfg, progress=False)
    assert result["dev_rows"] == 20 and (tmp_path / "run" / "result.json").is_file()
    assert not (tmp_path / "run" / ".resume-eval.json").exists()
