import pytest
import torch

from lora_diffusion.config import DiffusionConfig
from lora_diffusion.hub import BaseModelError, load_base, save_base
from lora_diffusion.testing import ARCHITECTURES, tiny_backbone


def _batch(B=2, L=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 3000, (B, L), generator=g)
    attn = torch.ones(B, L, dtype=torch.long)
    attn[1, 7:] = 0
    sel = torch.zeros(B, L, dtype=torch.bool)
    sel[0, [2, 5]] = True
    sel[1, 4] = True
    return ids, attn, sel


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hidden_states_and_selected_logits(arch):
    model = tiny_backbone(arch)
    ids, attn, sel = _batch()
    with torch.no_grad():
        h = model.hidden_states(ids, attn)
        full = model(ids, attn)
        part = model(ids, attn, select=sel)
    assert h.shape == (2, 10, model.hidden_size)
    assert full.shape == (2, 10, model.vocab_size) and part.shape == (3, model.vocab_size)
    assert torch.allclose(full[sel], part, atol=1e-5)
    assert model.mask_token_id == model.tokenizer.mask_token_id


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_save_load_round_trip_identical_logits(arch, tmp_path):
    model = tiny_backbone(arch, diffusion=DiffusionConfig(time_conditioning=True, schedule="cosine"))
    with torch.no_grad():
        model.time_embedding.proj.weight.normal_()  # non-trivial time conditioning
    ids, attn, sel = _batch()
    steps = torch.tensor([5, 80])
    with torch.no_grad():
        before = model(ids, attn, steps, select=sel)
    save_base(model, tmp_path / "base")
    assert (tmp_path / "base" / "model.safetensors").is_file()
    again = load_base(str(tmp_path / "base")).eval()
    assert again.diffusion.schedule == "cosine" and again.time_embedding is not None
    with torch.no_grad():
        after = again(ids, attn, steps, select=sel)
    assert torch.equal(before, after)


def test_time_conditioning_starts_as_identity_and_then_matters():
    plain = tiny_backbone("bert", seed=3)
    timed = tiny_backbone("bert", seed=3, diffusion=DiffusionConfig(time_conditioning=True))
    ids, attn, sel = _batch()
    with torch.no_grad():
        a = plain(ids, attn, select=sel)
        b = timed(ids, attn, torch.tensor([1, 100]), select=sel)
        assert torch.equal(a, b)
        timed.time_embedding.proj.bias.fill_(0.5)
        timed.time_embedding.proj.weight.normal_()
        c = timed(ids, attn, torch.tensor([1, 1]), select=sel)
        d = timed(ids, attn, torch.tensor([100, 100]), select=sel)
    assert not torch.allclose(c, d)
    with pytest.raises(ValueError, match="step"):
        timed.hidden_states(ids, attn)


def test_minilm_head_is_initialised_and_tied():
    model = load_base("minilm")
    mlm = model.mlm
    assert model.hidden_size == 384 and model.vocab_size == 30522
    assert mlm.cls.predictions.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()
    assert torch.equal(mlm.cls.predictions.transform.dense.weight, torch.eye(384))
    assert torch.count_nonzero(mlm.cls.predictions.decoder.bias) == 0
    n = sum(p.numel() for p in model.parameters())
    assert 22_000_000 < n < 23_500_000


def test_unknown_hub_id_offline_says_how_to_pass_a_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError, match="local directory"):
        load_base("no-such-org/no-such-model-xyz")


def test_directory_without_config_is_refused(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(BaseModelError, match="no config.json"):
        load_base(str(tmp_path / "junk"))


def test_corrupt_weights_are_reported(tmp_path):
    save_base(tiny_backbone("bert"), tmp_path / "base")
    (tmp_path / "base" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BaseModelError, match="base"):
        load_base(str(tmp_path / "base"))
