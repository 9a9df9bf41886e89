"""Invariants over every registered method (as PEFT tests its tuners)."""

import pytest
import torch

from lora_diffusion.config import ConfigError
from lora_diffusion.hub import save_base
from lora_diffusion.methods import apply_method, method_config, registered_methods
from lora_diffusion.methods.persistence import base_fingerprint, load_method, save_method
from lora_diffusion.testing import tiny_backbone

OPTIONS = {"lora": {"rank": 4, "alpha": 8.0}, "adapter": {"bottleneck": 8}, "prefix": {"num_prefix": 4},
           "trajectory": {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12},
           "trajectory-composed": {"adapter": {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}}}
D, LAYERS, FFN, V = 32, 2, 64, 30522  # tiny_backbone("bert") sizes
METHODS = registered_methods()


def _model(name, seed=0):
    torch.manual_seed(seed)
    return apply_method(name, tiny_backbone("bert", seed=0), method_config(name, OPTIONS.get(name)))


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 3000, (4, 12), generator=g)
    attn = torch.ones(4, 12, dtype=torch.long)
    attn[3, 10:] = 0
    instr = torch.zeros(4, 12, dtype=torch.bool)
    instr[:, 1:6] = True
    sel = torch.zeros(4, 12, dtype=torch.bool)
    sel[:, 7:9] = True
    return ids, attn, torch.tensor([5, 40, 70, 100]), sel, instr


def _train(model, steps=3):
    ids, attn, t, sel, instr = _batch()
    x_t = torch.where(sel, torch.full_like(ids, model.backbone.mask_token_id), ids)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x_t, attn, t, sel, instr), ids[sel])
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("name", METHODS)
def test_exactly_the_intended_parameters_change(name):
    model = _model(name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    _train(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert trainable and changed == trainable, (sorted(trainable - changed)[:3], sorted(changed - trainable)[:3])


@pytest.mark.parametrize("name", ["trajectory", "lora", "adapter", "bitfit", "full"])
def test_identity_at_start(name):
    base = tiny_backbone("bert", seed=0)
    ids, attn, t, sel, instr = _batch()
    with torch.no_grad():
        ref = base(ids, attn, t, select=sel)
        out = _model(name).eval()(ids, attn, t, sel, instr)
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_save_load_identical_logits(name, tmp_path):
    model = _train(_model(name))
    fp = base_fingerprint(tiny_backbone("bert", seed=0))
    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    save_method(model, tmp_path / "saved", fp)
    again = load_method(tmp_path / "saved", str(tmp_path / "base"))
    ids, attn, t, sel, instr = _batch()
    with torch.no_grad():
        assert torch.equal(model(ids, attn, t, sel, instr), again(ids, attn, t, sel, instr))


def test_lora_saves_in_peft_format_loadable_by_peft(tmp_path):
    from peft import PeftModel

    model = _train(_model("lora"))
    model.save_peft(tmp_path / "peft")
    fresh = tiny_backbone("bert", seed=0)
    PeftModel.from_pretrained(fresh.mlm, str(tmp_path / "peft"))
    ids, attn, t, sel, instr = _batch()
    with torch.no_grad():
        assert torch.allclose(model(ids, attn, t, sel, instr), fresh.eval()(ids, attn, t, select=sel), atol=1e-6)


def test_merged_equals_unmerged_lora():
    model = _train(_model("lora"))
    ids, attn, t, sel, instr = _batch()
    with torch.no_grad():
        unmerged = model(ids, attn, t, sel, instr)
        model.merge()
        merged = model(ids, attn, t, sel, instr)
    assert torch.allclose(merged, unmerged, atol=1e-5)


def _expected_count(name):
    r, m, p = OPTIONS["lora"]["rank"], OPTIONS["adapter"]["bottleneck"], OPTIONS["prefix"]["num_prefix"]
    per_layer_linears = [(D, D)] * 4 + [(D, FFN), (FFN, D)]  # q, k, v, attn-out, intermediate, output
    if name == "lora":
        return LAYERS * sum(r * (i + o) for i, o in per_layer_linears)
    if name == "adapter":
        return LAYERS * 2 * (D * m + m + m * D + D)
    if name == "prefix":
        return LAYERS * 2 * p * D
    if name == "bitfit":  # embeddings LN; per layer 4 D-biases (q,k,v,attn-out) + FFN + D + 2 LN; head LN + dense + vocab
        return 1 * D + LAYERS * (4 * D + FFN + D + 2 * D) + (D + D) + V
    if name == "full":
        return sum(p.numel() for p in tiny_backbone("bert", seed=0).parameters())
    return None


@pytest.mark.parametrize("name", ["lora", "adapter", "prefix", "bitfit", "full"])
def test_trainable_count_closed_formula(name):
    model = _model(name)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == _expected_count(name)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_finite(name, dtype):
    model = _model(name).eval()
    ids, attn, t, sel, instr = _batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        out = model(ids, attn, t, sel, instr)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name, options, field", [
    ("lora", {"rank": 0}, "rank"), ("lora", {"rank": 33}, "rank"), ("adapter", {"bottleneck": 0}, "bottleneck"),
    ("prefix", {"num_prefix": 0}, "num_prefix"), ("trajectory", {"ranks": [64, 8, 8]}, "ranks"),
])
def test_bad_options_name_the_field(name, options, field):
    with pytest.raises(ConfigError, match=field):
        apply_method(name, tiny_backbone("bert", seed=0), method_config(name, options))


def test_unknown_method_lists_registered():
    with pytest.raises(ConfigError, match="registered"):
        method_config("dora")


def test_percent_of_base_uses_the_base_before_injection(tmp_path):
    from lora_diffusion.methods.accounting import parameter_accounting

    base_count = sum(p.numel() for p in tiny_backbone("bert", seed=0).parameters())
    model = _model("adapter")
    acc = parameter_accounting(model, save_method(model, tmp_path / "a", base_fingerprint(model.backbone)))
    assert acc["base_parameters"] == base_count
    assert acc["percent_of_base"] == pytest.approx(100 * _expected_count("adapter") / base_count)
    assert acc["bytes_on_disk"] > 4 * _expected_count("adapter")


@pytest.mark.parametrize("name", METHODS)
def test_one_trunk_pass_per_training_step_and_per_reveal_step(name, tokenizer):
    """No duplicate trunk pass: one per objective call, one per reveal step in generation."""
    from lora_diffusion.data.classification import SST2, encode_examples
    from lora_diffusion.data.encoding import pad_collate
    from lora_diffusion.diffusion.sampler import SamplerConfig
    from lora_diffusion.generation import generate
    from lora_diffusion.objective import DiffusionObjective

    model = _model(name)
    rows = encode_examples([("a fine film", 1), ("dull", 0), ("so so", 1)], SST2, tokenizer)
    batch = pad_collate([rows[i] for i in range(3)])
    calls = []
    hook = model.backbone.trunk.register_forward_hook(lambda m, a, out: calls.append(1))
    DiffusionObjective(model.backbone.diffusion)(model.train(), batch, torch.Generator().manual_seed(0))
    assert len(calls) == 1
    calls.clear()
    generate(model, batch, SamplerConfig(num_steps=50), torch.Generator().manual_seed(0))
    hook.remove()
    assert 1 <= len(calls) <= 3  # one response token per row: at most one pass per row


def test_saved_bases_use_scaled_dot_product_attention(tmp_path):
    from lora_diffusion.hub import load_base

    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    assert load_base(str(tmp_path / "base")).mlm.config._attn_implementation == "sdpa"
