"""The trajectory method's variants beyond the paper (issue #13): each starts as the identity,
trains every new parameter, saves and loads, keeps one trunk pass per step, keeps the trunk out
of the backward pass unless it is the deep variant, and has a closed-form parameter count."""

import pytest
import torch

from lora_diffusion.config import ConfigError
from lora_diffusion.hub import save_base
from lora_diffusion.methods import apply_method, method_config
from lora_diffusion.methods.conditioning import AttentionPool, LayerMix, masked_mean
from lora_diffusion.methods.persistence import base_fingerprint, load_method, save_method
from lora_diffusion.methods.trajectory_bank import bank_parameters, nuclear_norm
from lora_diffusion.testing import tiny_backbone

D, LAYERS, F = 32, 4, 128  # tiny_backbone(hidden 32, 4 layers); the timestep features' width
SMALL = {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}
VARIANTS = {
    "paper": {},
    "lean": {"beta_rank": 3},
    "attention": {"pool": "attention"},
    "mix": {"read": "mix", "pool": "attention"},
    "shared": {"shared_bank": True, "ranks": [4, 4, 4]},
    "deep": {"deep_layers": [1, -2], "deep_rank": 4, "beta_rank": 3},
    "deep-separate": {"deep_layers": [2], "deep_rank": 4, "encoder": "separate", "encoder_heads": 2},
    "deep-all": {"deep_all": True, "deep_rank": 4, "beta_rank": 3},  # sites after layers 0, 1, 2 of 0..3
    "side": {"read": "mix", "pool": "attention", "beta_rank": 3, "side_dim": 8, "side_heads": 2},
    "side-last": {"side_dim": 8, "side_heads": 2, "side_layers": 2},
}


def _model(variant, arch="bert", seed=0):
    torch.manual_seed(seed)
    cfg = method_config("trajectory", {**SMALL, **VARIANTS[variant]})
    return apply_method("trajectory", tiny_backbone(arch, seed=0, layers=LAYERS), cfg)


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


def _step(model, opt=None):
    ids, attn, t, sel, instr = _batch()
    x_t = torch.where(sel, torch.full_like(ids, model.backbone.mask_token_id), ids)
    loss = torch.nn.functional.cross_entropy(model(x_t, attn, t, sel, instr), ids[sel])
    loss = loss + sum(w * v for v, w in model.regularization().values())
    if opt is not None:
        opt.zero_grad()
    loss.backward()
    if opt is not None:
        opt.step()
    return loss


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_identity_at_start_and_every_parameter_trains(variant, arch):
    model = _model(variant, arch)
    ids, attn, t, sel, instr = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, attn, t, sel, instr), model.backbone(ids, attn, t, select=sel),
                                   rtol=0, atol=1e-5)
    trunk_before = {n: p.clone() for n, p in model.backbone.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    _step(model, opt)
    opt.zero_grad()
    _step(model)
    silent = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not silent, f"parameters without gradient after one step: {silent}"
    assert all(torch.equal(p, trunk_before[n]) for n, p in model.backbone.named_parameters())
    assert not any(p.requires_grad or p.grad is not None for p in model.backbone.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_load_identical_logits(variant, tmp_path):
    model = _model(variant)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        _step(model.train(), opt)
    base = tiny_backbone("bert", seed=0, layers=LAYERS)
    save_base(base, tmp_path / "base")
    save_method(model.eval(), tmp_path / "saved", base_fingerprint(base))
    again = load_method(tmp_path / "saved", str(tmp_path / "base"))
    ids, attn, t, sel, instr = _batch()
    with torch.no_grad():
        out = model(ids, attn, t, sel, instr)
        assert not torch.equal(out, model.backbone(ids, attn, t, select=sel))  # trained: not the base any more
        assert torch.equal(out, again(ids, attn, t, sel, instr))


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_trunk_pass_and_autograd_only_where_needed(variant):
    model = _model(variant).train()
    seen = []
    hook = model.backbone.trunk.register_forward_hook(lambda m, a, o: seen.append(o.last_hidden_state.requires_grad))
    _step(model)
    hook.remove()
    deep = bool(VARIANTS[variant].get("deep_layers") or VARIANTS[variant].get("deep_all"))
    assert seen == [deep]  # one pass; the trunk's output is in the graph only for deep layers


def test_deep_layers_backward_only_above_the_lowest_site():
    model = _model("deep").train()  # sites after layers 1 and 2 of 0..3
    graph = []
    stack = model.backbone.trunk.encoder.layer
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: graph.append((i, o.requires_grad)))
             for i, layer in enumerate(stack)]
    _step(model)
    for h in hooks:
        h.remove()
    assert graph == [(0, False), (1, True), (2, True), (3, True)]  # layer 0's activations are not stored


def test_deep_all_perturbs_every_layer_below_the_last():
    model = _model("deep-all")
    assert model.adapter.deep.layers == [0, 1, 2]  # the last layer's output is the final phase banks' site
    assert method_config("trajectory", {"preset": "deep-all"}).deep_sites(6) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="adapter"):
        method_config("trajectory-composed", {"tasks": ["a", "b"], "adapter": {"deep_all": True}})


def test_deep_site_adds_its_perturbation_to_the_layer_output():
    model = _model("deep").eval()  # sites after layers 1 and 2
    ids, attn, t, sel, instr = _batch()
    stack = model.backbone.trunk.encoder.layer
    with torch.no_grad():
        model.adapter.deep.banks["2"].beta[1].bias.fill_(0.5)  # every module, every coordinate: beta = 0.5
    raw, seen = [], []
    model.adapter.deep.detach()  # re-attach after a recorder, so that the recorder sees the raw output
    recorder = stack[2].register_forward_hook(lambda m, a, o: raw.append(o))
    model.adapter.deep.attach(stack)
    reader = stack[3].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        model(ids, attn, t, sel, instr)
    recorder.remove()
    reader.remove()
    sigma = torch.tensor([0.25, 0.5, 1.0, 1.0])  # t = 5 late, 40 mid, 70 and 100 early
    torch.testing.assert_close(seen[0], raw[0] + (2 * 0.5 * sigma)[:, None, None], rtol=0, atol=1e-6)


def test_sigma_zero_gives_the_base_for_every_variant_even_trained():
    for variant in ("deep", "mix", "shared", "side"):
        cfg = method_config("trajectory", {**SMALL, **VARIANTS[variant], "sigmas": [0.0, 0.0, 0.0]})
        torch.manual_seed(0)
        model = apply_method("trajectory", tiny_backbone("bert", seed=0, layers=LAYERS), cfg)
        for p in model.adapter.parameters():
            torch.nn.init.normal_(p)
        ids, attn, t, sel, instr = _batch()
        with torch.no_grad():
            assert torch.equal(model(ids, attn, t, sel, instr), model.backbone(ids, attn, t, select=sel))


def _closed_form(cfg, hidden=D, layers=LAYERS, heads=2):
    time = F * cfg.time_dim + cfg.time_dim + cfg.time_dim ** 2 + cfg.time_dim
    if cfg.encoder == "trunk":
        encoder = hidden * cfg.cond_dim + cfg.cond_dim + cfg.cond_dim ** 2 + cfg.cond_dim
    else:  # positions (the base's token embeddings are read, not trained), layers (attention 4 D^2 + 4 D,
        # FFN 8 D^2 + 5 D, two LNs 4 D), the final LN 2 D, out
        encoder = 512 * hidden + cfg.encoder_layers * (12 * hidden ** 2 + 13 * hidden) + 2 * hidden \
            + hidden * cfg.cond_dim + cfg.cond_dim
    encoder += hidden if cfg.pool == "attention" else 0
    k, c, rb = cfg.num_modules, cfg.cond_dim, cfg.beta_rank
    banks = sum(k * r * (hidden + cfg.time_dim) + k * hidden * r + (c + 1) * k * r
                + ((c + 1) * k * hidden if not rb else c * rb + (rb + 1) * k * hidden)
                for r in (cfg.ranks[:1] if cfg.shared_bank else cfg.ranks))
    r = cfg.deep_rank
    sites = layers - 1 if cfg.deep_all else len(set(i % layers for i in cfg.deep_layers))
    deep = sites * (
        k * r * (hidden + cfg.time_dim) + k * hidden * r + (c + 1) * k * r
        + ((c + 1) * k * hidden if not rb else c * rb + (rb + 1) * k * hidden))
    mix = layers + 1 if cfg.read == "mix" else 0
    d, t = cfg.side_dim, cfg.time_dim  # in, time (no bias), per layer attention + FFN (4x) + 2 LNs, final LN, out
    side = (hidden * d + d + t * d + cfg.side_layers * (4 * d * d + 4 * d + 8 * d * d + 5 * d + 4 * d)
            + 2 * d + d * hidden + hidden) if d else 0
    return time + encoder + banks + deep + mix + side


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_closed_formula(variant):
    model = _model(variant)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == _closed_form(model.cfg)
    cfg = model.cfg
    assert bank_parameters(D, cfg.time_dim, cfg.cond_dim, 2, cfg.num_modules, cfg.beta_rank) == \
        sum(p.numel() for p in type(model.adapter.banks[0])(D, cfg.time_dim, cfg.cond_dim, 2, cfg.num_modules,
                                                           cfg.beta_rank).parameters())


def test_presets_at_minilm_size_meet_the_parameter_budgets():
    """On MiniLM-L6's shape (D 384, 6 layers; the masked-LM base counts 22.7M): lean and mix at
    most 1% of the base, deep at most 2%; the paper's configuration 4.5%."""
    d, layers, base_mlm = 384, 6, 22_713_216
    for preset, budget in [("lean", 1.0), ("mix", 1.0), ("deep", 2.0), ("side", 2.0), ("side2", 2.0)]:
        cfg = method_config("trajectory", {"preset": preset})
        count = _closed_form(cfg, hidden=d, layers=layers)
        assert 100 * count / base_mlm <= budget, (preset, count)
    paper = _closed_form(method_config("trajectory", {"preset": "paper"}), hidden=d, layers=layers)
    assert 4.0 < 100 * paper / base_mlm < 5.0  # the paper's configuration: 4.5% (most of it the beta heads)


def test_preset_values_then_the_keys_given():
    cfg = method_config("trajectory", {"preset": "lean", "ranks": [4, 4, 4]})
    assert cfg.preset == "lean" and cfg.beta_rank == 8 and cfg.ranks == [4, 4, 4] and cfg.time_dim == 64
    assert method_config("trajectory", {}).preset == "paper" and method_config("trajectory", {}).beta_rank == 0
    with pytest.raises(ConfigError, match="method_options.preset"):
        method_config("trajectory", {"preset": "bogus"})


@pytest.mark.parametrize("options,field", [
    ({"read": "all"}, "read"), ({"pool": "max"}, "pool"), ({"beta_rank": -1}, "beta_rank"),
    ({"shared_bank": True}, "shared_bank"), ({"deep_rank": 0}, "deep_rank"),
    ({"deep_layers": [1], "read": "mix"}, "read"), ({"deep_all": True, "read": "mix"}, "read"),
    ({"deep_all": True, "deep_layers": [1]}, "deep_all"),
    ({"side_dim": -1}, "side_dim"), ({"side_dim": 6, "side_heads": 4}, "side_heads"),
    ({"side_dim": 8, "side_layers": 0}, "side_layers"), ({"side_dim": 8, "deep_all": True}, "side_dim"),
])
def test_bad_variant_options_name_the_field(options, field):
    with pytest.raises(ConfigError, match=field):
        method_config("trajectory", options)


def test_deep_layer_out_of_range_and_checkpointing_are_refused():
    with pytest.raises(ConfigError, match="deep_layers: layer 7 does not exist"):
        _model_with({"deep_layers": [7]})
    from lora_diffusion.training.distributed import enable_gradient_checkpointing

    with pytest.raises(ConfigError, match="train.gradient_checkpointing"):
        enable_gradient_checkpointing(_model("deep"))
    with pytest.raises(ConfigError, match="adapter"):
        method_config("trajectory-composed", {"tasks": ["a", "b"], "adapter": {"deep_layers": [1]}})


def _model_with(options):
    return apply_method("trajectory", tiny_backbone("bert", seed=0, layers=LAYERS),
                        method_config("trajectory", {**SMALL, **options}))


def test_layer_mix_and_attention_pool_by_hand():
    states = [torch.randn(2, 5, 8) for _ in range(3)]
    ln = [torch.nn.functional.layer_norm(s, (8,)) for s in states]
    mix = LayerMix(3)
    torch.testing.assert_close(mix(states), sum(ln) / 3)
    with torch.no_grad():
        mix.logits.copy_(torch.tensor([0.0, 0.0, 50.0]))
    torch.testing.assert_close(mix(states), ln[2], atol=1e-6, rtol=0)
    h = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    pool = AttentionPool(8)
    torch.testing.assert_close(pool(h, mask), masked_mean(h, mask))  # zero query: the mean
    with torch.no_grad():
        pool.query.copy_(h[1, 2] * 100)  # row 1: position 2 scores far above 1 and 3
    assert torch.allclose(pool(h, mask)[1], h[1, 2], atol=1e-4)
    assert pool(h, torch.zeros_like(mask)).abs().sum() == 0  # no instruction: zeros


def test_nuclear_norm_ignores_round_off_singular_values():
    u = torch.tensor([[1.0], [0.0], [0.0]])
    v = torch.tensor([[0.0, 1.0]])
    w = (2.0 * u @ v + 1e-9 * torch.randn(3, 2, generator=torch.Generator().manual_seed(0))).requires_grad_()
    nuclear_norm(w).backward()
    torch.testing.assert_close(w.grad, u @ v, atol=1e-5, rtol=0)  # only the one real direction


@pytest.mark.parametrize("variant", ["paper", "mix", "deep"])
def test_delta_is_what_the_method_adds_to_the_last_hidden_state(variant):
    model = _model(variant).eval()
    for p in model.adapter.parameters():
        torch.nn.init.normal_(p, std=0.1)
    ids, attn, t, _, instr = _batch()
    with torch.no_grad():
        delta = model.delta(ids, attn, t, instr)
        expected = model.perturbed_hidden(ids, attn, t, None, instr) - model.backbone.hidden_states(ids, attn, t)
    torch.testing.assert_close(delta, expected, rtol=0, atol=1e-5)
    assert delta.abs().sum() > 0


def test_side_network_attends_across_positions_but_never_to_padding():
    """The side perturbation at one position moves when another real position's state moves (the
    phase banks' g acts position by position), and not when a padded position's does."""
    from lora_diffusion.methods.trajectory_side import SideNetwork, side_parameters

    torch.manual_seed(0)
    side = SideNetwork(D, 16, 8, 2, layers=2)
    assert sum(p.numel() for p in side.parameters()) == side_parameters(D, 16, 8, layers=2)
    torch.nn.init.normal_(side.out.weight)  # zero at start: the identity
    r, e = torch.randn(2, 6, D), torch.randn(2, 16)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    with torch.no_grad():
        out = side(r, e, mask)
        # moves along random directions: the side network layer-norms what it reads, so a constant
        # added to every feature of a position would be invisible to it (and this test vacuous)
        moved = r.clone()
        moved[:, 0] += torch.randn(D)  # a real position of both rows
        moved[1, 5] += 100.0 * torch.randn(D)  # a padded position of row 1
        again = side(moved, e, mask)
    assert (again[0, 3] - out[0, 3]).abs().max() > 1e-3  # position 3 re-reads position 0
    moved_pad = r.clone()
    moved_pad[1, 5] += 100.0 * torch.randn(D)
    with torch.no_grad():
        torch.testing.assert_close(side(moved_pad, e, mask)[1, :4], out[1, :4], rtol=0, atol=1e-6)


def test_side_models_are_refused_where_they_cannot_act_alike():
    from lora_diffusion.methods.multitask import MultiTaskTrajectoryModel
    from lora_diffusion.prompt_cache import check_support

    model = _model("side-last")
    with pytest.raises(ConfigError, match="prompt_cache: a trajectory side network"):
        check_support(model, model.backbone, "approximate", "full")
    with pytest.raises(ConfigError, match="adapter"):
        method_config("trajectory-composed", {"tasks": ["a", "b"], "adapter": {"side_dim": 8, "side_heads": 2}})
    for variant in ("side-last", "mix"):  # a layer mix read from h_t alone would be silently wrong
        with pytest.raises(ConfigError, match="last-layer adapters"):
            MultiTaskTrajectoryModel(tiny_backbone("bert", seed=0, layers=LAYERS), {"a": _model(variant).adapter})
