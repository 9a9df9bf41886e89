"""Backbone families behind the one DiffusionLM interface: more masked-LM encoders, a
remote-code LLaDA-style diffusion LM (custom code written by the test) and causal LMs run
bidirectionally (a2d). Each on a tiny random config: every registered method trains two steps
through the objective (or is refused in one line naming the family), generation runs, the
adapter saves and loads to identical logits, and one trunk pass per step holds."""

import pytest
import torch

from lora_diffusion.config import DiffusionConfig
from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.diffusion.sampler import SamplerConfig
from lora_diffusion.families import detect_family, full_attention_mask
from lora_diffusion.generation import generate
from lora_diffusion.hub import BaseModelError, load_base, save_base
from lora_diffusion.methods import apply_method, method_config
from lora_diffusion.methods.persistence import base_fingerprint, load_method, save_method
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import CAUSAL, MASKED, tiny_backbone
from lora_diffusion.testing_remote import write_tiny_llada

NEW = [a for a in MASKED if a not in ("bert", "roberta", "distilbert", "modernbert")] + list(CAUSAL) + ["tiny-llada"]
METHODS = ["full", "lora", "adapter", "bitfit", "prefix", "trajectory"]
OPTIONS = {"lora": {"rank": 4, "alpha": 8.0}, "adapter": {"bottleneck": 8}, "prefix": {"num_prefix": 4},
           "trajectory": {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}}
# refusals, in one line naming the family (model type): no prefix wrapper outside BERT-style
# attention; BitFit on a base without bias terms
REFUSED = {("deberta-v2", "prefix"), ("eurobert", "prefix"), ("llama", "prefix"), ("qwen2", "prefix"),
           ("gpt2", "prefix"), ("tiny-llada", "prefix"), ("eurobert", "bitfit"), ("llama", "bitfit")}


@pytest.fixture(scope="module")
def llada_dir(tmp_path_factory):
    return write_tiny_llada(tmp_path_factory.mktemp("remote") / "tiny-llada")


def _backbone(arch, llada_dir):
    if arch == "tiny-llada":
        return load_base(str(llada_dir)).eval()
    return tiny_backbone(arch, seed=0)


def _batch(tokenizer):
    rows = encode_examples([("a fine film", 1), ("dull", 0), ("so so", 1), ("great fun", 1)], SST2, tokenizer)
    batch = pad_collate([rows[i] for i in range(4)])
    return batch


@pytest.mark.parametrize("arch", NEW)
def test_family_forward_save_load_and_bidirectional(arch, llada_dir, tmp_path):
    model = _backbone(arch, llada_dir)
    assert model.family == {"tiny-llada": "diffusion", **{a: "a2d" for a in CAUSAL}}.get(arch, "masked")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 3000, (2, 10), generator=g)
    attn = torch.ones(2, 10, dtype=torch.long)
    attn[1, 7:] = 0
    sel = torch.zeros(2, 10, dtype=torch.bool)
    sel[0, [2, 5]] = sel[1, 4] = True
    with torch.no_grad():
        full, part = model(ids, attn), model(ids, attn, select=sel)
        later = ids.clone()
        later[0, 8] += 1  # a later token changes an earlier position: attention is bidirectional
        moved = model.hidden_states(later, attn)[0, 0] - model.hidden_states(ids, attn)[0, 0]
    assert full.shape == (2, 10, model.vocab_size) and torch.allclose(full[sel], part, atol=1e-5)
    assert moved.abs().max() > 1e-6
    save_base(model, tmp_path / "base")
    again = load_base(str(tmp_path / "base")).eval()
    assert again.family == model.family and again.mask_token_id == model.mask_token_id
    with torch.no_grad():
        assert torch.equal(again(ids, attn, select=sel), part)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", NEW)
def test_every_method_on_every_family(arch, method, llada_dir, tokenizer, tmp_path):
    base = _backbone(arch, llada_dir)
    fingerprint = base_fingerprint(base)
    torch.manual_seed(0)
    if (arch, method) in REFUSED:
        with pytest.raises(ValueError) as err:
            apply_method(method, base, method_config(method, OPTIONS.get(method)))
        message = str(err.value)
        assert "\n" not in message and (base.mlm.config.model_type in message or "bias" in message)
        return
    model = apply_method(method, base, method_config(method, OPTIONS.get(method)))
    batch = _batch(tokenizer)
    objective = DiffusionObjective(base.diffusion)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    calls = []
    hook = base.trunk.register_forward_hook(lambda *_: calls.append(1))
    model.train()
    learned = []
    for step in range(2):  # two training steps, one trunk pass each
        loss, logs = objective(model, batch, torch.Generator().manual_seed(2 * step))
        assert torch.isfinite(loss) and logs["masked_tokens"] > 0
        opt.zero_grad()
        loss.backward()
        learned.append(any(p.grad is not None and p.grad.abs().sum() > 0 for p in params))
        opt.step()
    assert len(calls) == 2 and all(learned)
    calls.clear()
    model.eval()
    out = generate(model, batch, SamplerConfig(num_steps=20), torch.Generator().manual_seed(0))
    hook.remove()
    assert 1 <= len(calls) <= 4 and out is not None  # one response token per row
    save_method(model, tmp_path / "adapter", fingerprint)
    loaded = load_method(tmp_path / "adapter", _backbone(arch, llada_dir))
    x, a, g = batch["input_ids"], batch["attention_mask"], batch["generate_mask"].bool()
    steps = torch.tensor([5, 40, 70, 100])
    with torch.no_grad():
        assert torch.allclose(model(x, a, steps, g, batch["instruction_mask"]),
                              loaded(x, a, steps, g, batch["instruction_mask"]), atol=1e-6)


def test_a2d_mask_is_full_and_hides_padding():
    m = full_attention_mask(torch.tensor([[1, 1, 0]]), torch.float32)
    assert m.shape == (1, 1, 3, 3) and (m[0, 0, :, :2] == 0).all() and (m[0, 0, :, 2] < -1e30).all()


def test_family_detection():
    assert detect_family({"architectures": ["BertForMaskedLM"]}) == "masked"
    assert detect_family({"architectures": ["BertModel"]}) == "masked"  # sentence encoders
    assert detect_family({"architectures": ["LlamaForCausalLM"]}) == "a2d"
    assert detect_family({"architectures": ["GPT2LMHeadModel"]}) == "a2d"
    assert detect_family({"auto_map": {"AutoModel": "modeling_llada.LLaDAModelLM"}}) == "diffusion"


def test_a2d_tokenizer_without_mask_token_gets_one(tmp_path):
    from lora_diffusion.families import MASK_TOKEN

    base = tiny_backbone("llama")
    tok = base.tokenizer
    tok.mask_token = None
    save_base(base, tmp_path / "llama")
    loaded = load_base(str(tmp_path / "llama"))
    assert loaded.tokenizer.mask_token == MASK_TOKEN and loaded.mask_token_id == len(loaded.tokenizer) - 1
    assert loaded.vocab_size == len(loaded.tokenizer)


def test_remote_code_loads_offline_from_a_local_path(llada_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_base(str(llada_dir), diffusion=DiffusionConfig(num_steps=50))
    assert model.family == "diffusion" and model.mask_token_id == model.mlm.config.mask_token_id


def test_remote_code_needs_consent_for_hub_ids(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LORA_DIFFUSION_TRUST_REMOTE_CODE", raising=False)
    with pytest.raises(BaseModelError, match="local directory"):
        load_base("GSAI-ML/LLaDA-8B-Instruct")  # offline: says how to pass a local path


@pytest.mark.parametrize("arch", ["llama", "eurobert", "tiny-llada"])
def test_local_paths_never_touch_the_network(arch, llada_dir, tmp_path, monkeypatch):
    """Even with the offline switches unset, a local directory loads with sockets disabled."""
    import socket

    source = llada_dir if arch == "tiny-llada" else save_base(tiny_backbone(arch), tmp_path / arch)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access while loading a local path: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert load_base(str(source)).family == {"llama": "a2d", "eurobert": "masked"}.get(arch, "diffusion")
