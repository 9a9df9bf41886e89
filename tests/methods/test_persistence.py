import json

import pytest
import torch

from lora_diffusion.config import DiffusionConfig
from lora_diffusion.hub import save_base
from lora_diffusion.methods import TrajectoryConfig, apply_method, method_config
from lora_diffusion.methods.persistence import (
    AdapterError,
    base_fingerprint,
    load_method,
    save_method,
)
from lora_diffusion.testing import tiny_backbone


def _trained(seed=0):
    base = tiny_backbone("bert", seed=0)
    fp = base_fingerprint(base)
    torch.manual_seed(seed)
    model = apply_method("trajectory", base, TrajectoryConfig(ranks=[8, 4, 2], time_dim=16, cond_dim=12))
    with torch.no_grad():
        for p in model.adapter.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval(), fp


def _inputs():
    ids = torch.randint(1000, 3000, (3, 10), generator=torch.Generator().manual_seed(0))
    instr = torch.zeros(3, 10, dtype=torch.bool)
    instr[:, 1:5] = True
    sel = torch.zeros(3, 10, dtype=torch.bool)
    sel[:, 7] = True
    return ids, torch.ones(3, 10, dtype=torch.long), torch.tensor([10, 50, 90]), sel, instr


def test_save_load_identical_logits_and_only_trained_tensors(tmp_path):
    model, fp = _trained()
    save_base(model.backbone, tmp_path / "base")
    save_method(model, tmp_path / "adapter", fp)
    meta = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert meta["method"] == "trajectory" and meta["config"]["ranks"] == [8, 4, 2] and meta["num_steps"] == 100
    assert meta["base_fingerprint"]["hidden_size"] == 32 and len(meta["base_fingerprint"]["weights_sha256"]) == 64
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert all(k.startswith("adapter.") for k in saved)
    assert sum(v.numel() for v in saved.values()) == sum(p.numel() for p in model.adapter.parameters())
    again = load_method(tmp_path / "adapter", str(tmp_path / "base"))
    with torch.no_grad():
        assert torch.equal(model(*_inputs()), again(*_inputs()))


def test_wrong_base_is_refused_naming_both(tmp_path):
    model, fp = _trained()
    save_method(model, tmp_path / "adapter", fp)
    other = tiny_backbone("bert", seed=1)
    with pytest.raises(AdapterError, match="another base: saved fingerprint .* this base"):
        load_method(tmp_path / "adapter", other)
    wider = tiny_backbone("bert", seed=0, hidden=48)
    with pytest.raises(AdapterError, match="hidden size 32 .* hidden size 48"):
        load_method(tmp_path / "adapter", wider)


def test_corrupt_adapter_is_reported(tmp_path):
    model, fp = _trained()
    save_method(model, tmp_path / "adapter", fp)
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"junk")
    with pytest.raises(AdapterError, match="unreadable adapter weights"):
        load_method(tmp_path / "adapter", tiny_backbone("bert", seed=0))
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        load_method(tmp_path, tiny_backbone("bert", seed=0))


def test_fingerprint_changes_with_weights_and_time_conditioning_matters_not():
    a, b = tiny_backbone("bert", seed=0), tiny_backbone("bert", seed=0)
    assert base_fingerprint(a) == base_fingerprint(b)
    with torch.no_grad():
        b.mlm.bert.encoder.layer[0].output.dense.bias.add_(1e-3)
    assert base_fingerprint(a)["weights_sha256"] != base_fingerprint(b)["weights_sha256"]
    assert tiny_backbone("bert", diffusion=DiffusionConfig(num_steps=10)).diffusion.num_steps == 10


def test_building_a_lora_model_raises_no_deprecation_noise():
    """peft reads transformers' deprecated ``is_gradient_checkpointing``: silenced, nothing else."""
    import warnings

    from lora_diffusion.methods.lora import quiet_peft

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        apply_method("lora", tiny_backbone("bert", seed=0), method_config("lora", {"rank": 4}))
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_peft():
            warnings.warn("something else", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]
