import pytest
import torch

from lora_diffusion.config import ConfigError
from lora_diffusion.methods import TrajectoryConfig, apply_method
from lora_diffusion.methods.trajectory import nuclear_norm, orthogonality, phase_index
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import tiny_backbone

SMALL = dict(ranks=[8, 4, 2], time_dim=16, cond_dim=12)


def _batch(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = 12
    ids = torch.randint(1000, 3000, (B, L), generator=g)
    attn = torch.ones(B, L, dtype=torch.long)
    instr = torch.zeros(B, L, dtype=torch.bool)
    instr[:, 1:7] = True
    gen = torch.zeros(B, L, dtype=torch.bool)
    gen[:, 8:11] = True
    return {"input_ids": ids, "attention_mask": attn, "generate_mask": gen, "instruction_mask": instr}


def _model(encoder="trunk", seed=0, **kw):
    torch.manual_seed(seed)
    return apply_method("trajectory", tiny_backbone("bert", seed=0), TrajectoryConfig(encoder=encoder, **{**SMALL, **kw}))


def test_phase_boundaries_T100():
    steps = torch.tensor([1, 33, 34, 66, 67, 100])
    assert phase_index(steps, 100, [1 / 3, 2 / 3]).tolist() == [2, 2, 1, 1, 0, 0]


def test_mixed_batch_uses_each_rows_own_bank():
    model = _model()
    for bank in model.adapter.banks:
        torch.nn.init.normal_(bank.up)
    b = _batch(B=3)
    h = torch.randn(3, 12, 32)
    steps = torch.tensor([90, 50, 10])
    mixed = model.adapter.delta(h, steps, b["instruction_mask"])
    for i in range(3):
        alone = model.adapter.delta(h[i : i + 1], steps[i : i + 1], b["instruction_mask"][i : i + 1])
        assert torch.allclose(mixed[i], alone[0], atol=1e-6)
    with torch.no_grad():
        model.adapter.banks[1].up.zero_()
        model.adapter.banks[1].beta.bias.zero_()
    assert torch.count_nonzero(model.adapter.delta(h, steps, b["instruction_mask"])[1]) == 0


@pytest.mark.parametrize("encoder", ["trunk", "separate"])
def test_identity_at_start_then_every_parameter_gets_gradient(encoder):
    model = _model(encoder)
    base = model.backbone
    b = _batch()
    steps = torch.tensor([5, 40, 70, 100])
    sel = b["generate_mask"]
    with torch.no_grad():
        assert torch.equal(model(b["input_ids"], b["attention_mask"], steps, sel, b["instruction_mask"]),
                           base(b["input_ids"], b["attention_mask"], steps, select=sel))
    trunk_before = {n: p.clone() for n, p in base.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x_t = torch.where(sel, torch.full_like(b["input_ids"], base.mask_token_id), b["input_ids"])
    for it in range(2):  # every phase has a row and every response token is masked
        opt.zero_grad()
        logits = model(x_t, b["attention_mask"], steps, sel, b["instruction_mask"])
        loss = torch.nn.functional.cross_entropy(logits, b["input_ids"][sel])
        loss = loss + sum(w * v for v, w in model.regularization().values())
        loss.backward()
        if it == 0:
            opt.step()
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or torch.count_nonzero(p.grad) == 0)]
    assert not no_grad, f"parameters without gradient after one step: {no_grad}"
    assert all(torch.equal(p, trunk_before[n]) for n, p in base.named_parameters())
    assert all(not p.requires_grad for p in base.parameters())
    _, logs = DiffusionObjective(base.diffusion)(model, b, torch.Generator().manual_seed(0))
    assert {"reg_rank", "reg_orth", "loss_denoise"} <= logs.keys() and logs["reg_rank"] > 0


def test_zero_init_of_both_factors_would_train_nothing():
    """The reason W_B is random: with both factors zero, no bank weight gets any gradient."""
    model = _model()
    with torch.no_grad():
        for bank in model.adapter.banks:
            bank.down.weight.zero_()
    b = _batch()
    loss, _ = DiffusionObjective(model.backbone.diffusion)(model, b, torch.Generator().manual_seed(0))
    loss.backward()
    for bank in model.adapter.banks:
        assert bank.up.grad is None or torch.count_nonzero(bank.up.grad) == 0


def test_trunk_runs_without_autograd():
    model = _model()
    b = _batch()
    seen = []
    hook = model.backbone.trunk.register_forward_hook(lambda m, i, o: seen.append(o.last_hidden_state.requires_grad))
    model(b["input_ids"], b["attention_mask"], torch.tensor([5, 40, 70, 100]), b["generate_mask"], b["instruction_mask"])
    hook.remove()
    assert seen == [False]


def test_deltas_of_one_module_lie_in_rank_r_affine_space():
    """For fixed c and phase, delta_i = W_A (gamma * ReLU(.)) + beta: affine dim <= r; k modules <= k r."""
    model = _model(ranks=[4, 4, 4])
    for bank in model.adapter.banks:
        torch.nn.init.normal_(bank.up)
        torch.nn.init.normal_(bank.beta.bias)
    bank = model.adapter.banks[0]
    h = torch.randn(1, 200, 32)
    e = model.adapter.time_embedding(torch.tensor([90]))
    c = torch.randn(1, 12)
    outs = bank.module_outputs(h, e, c)[0]  # (200, k, D)
    for i in range(2):
        s = torch.linalg.svdvals(outs[:, i] - outs[:, i].mean(0))
        assert int((s > 1e-4 * s[0]).sum()) <= 4
    s = torch.linalg.svdvals(outs.sum(1) - outs.sum(1).mean(0))
    assert int((s > 1e-4 * s[0]).sum()) <= 8


def test_regularisers_by_hand():
    a = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    assert nuclear_norm(a).item() == pytest.approx(7.0)
    assert nuclear_norm(torch.tensor([[1.0, 1.0], [1.0, 1.0]])).item() == pytest.approx(2.0)
    a1 = torch.tensor([[1.0], [0.0]])
    a2 = torch.tensor([[1.0], [2.0]])
    # ordered pairs: (1,2) and (2,1), each ||a1^T a2||_F^2 = 1
    assert orthogonality([a1, a2]).item() == pytest.approx(2.0)
    assert orthogonality([a1, torch.tensor([[0.0], [5.0]])]).item() == 0.0
    w = torch.zeros(3, 2, requires_grad=True)
    nuclear_norm(w).backward()
    assert torch.isfinite(w.grad).all()


def test_parameter_count_closed_formula():
    D, dt, C, k, F = 32, 16, 12, 2, 128
    ranks = [8, 4, 2]
    model = _model()
    banks = sum((D + dt) * k * r + k * D * r + (C + 1) * k * r + (C + 1) * k * D for r in ranks)
    time = F * dt + dt + dt * dt + dt
    encoder = D * C + C + C * C + C
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == banks + time + encoder
    model_t100 = _model()
    assert sum(p.numel() for p in model_t100.adapter.parameters()) == banks + time + encoder


def test_bad_trajectory_configs_name_the_field():
    for kw, field in [(dict(ranks=[8, 4]), "ranks"), (dict(ranks=[0, 4, 2]), "ranks"),
                      (dict(num_modules=0), "num_modules"), (dict(boundaries=[0.7, 0.3]), "boundaries"),
                      (dict(encoder="bogus"), "encoder"), (dict(sigmas=[1, -1, 0]), "sigmas")]:
        with pytest.raises(ConfigError, match=field):
            TrajectoryConfig(**kw)
    with pytest.raises(ConfigError, match="hidden size 32"):
        _model(ranks=[64, 8, 8])


@pytest.mark.parametrize("steps", [[3, 50, 80, 99], [90, 70, 99, 68]])  # mixed phases; all early
@pytest.mark.parametrize("shared_bank", [False, True])
def test_adapter_at_selected_positions_equals_full_then_selected(steps, shared_bank):
    from lora_diffusion.methods import TrajectoryConfig
    from lora_diffusion.methods.trajectory import TrajectoryAdapter

    torch.manual_seed(0)
    ranks = [4, 4, 4] if shared_bank else [8, 4, 2]
    cfg = TrajectoryConfig(ranks=ranks, time_dim=16, cond_dim=12, shared_bank=shared_bank)
    adapter = TrajectoryAdapter(cfg, 32, 100, 4)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.1 * torch.randn_like(p))
    h = torch.randn(4, 9, 32)
    steps = torch.tensor(steps)
    instr = torch.zeros(4, 9, dtype=torch.bool)
    instr[:, 1:4] = True
    select = torch.rand(4, 9, generator=torch.Generator().manual_seed(1)) < 0.4
    select[2] = False  # a row with nothing selected
    torch.testing.assert_close(adapter(h, steps, instr, select=select), adapter(h, steps, instr)[select])


def test_bank_with_row_index_equals_the_equation_per_position():
    """PhaseBank(h, e, c, rows) against g_i = W_A^(i) (gamma_i(c) * ReLU(W_B^(i) [h ; e])) + beta_i(c)
    summed over i, written out position by position with each position's own row of e and c."""
    from lora_diffusion.methods.trajectory_bank import PhaseBank

    torch.manual_seed(0)
    D, dt, C, r, k = 6, 3, 5, 2, 3
    bank = PhaseBank(D, dt, C, r, k)
    with torch.no_grad():
        for p in bank.parameters():
            p.copy_(torch.randn_like(p))
    e, c = torch.randn(2, dt), torch.randn(2, C)  # two condition rows
    h = torch.randn(5, 1, D)  # five selected positions
    rows = torch.tensor([1, 0, 1, 1, 0])
    got = bank(h, e, c, rows)[:, 0]
    w_b = bank.down.weight.view(k, r, D + dt)
    gamma = 1 + bank.gamma(c).view(2, k, r)
    beta = bank.beta(c).view(2, k, D)
    for n in range(5):
        x, b = torch.cat([h[n, 0], e[rows[n]]]), rows[n]
        want = sum(bank.up[i] @ (gamma[b, i] * torch.relu(w_b[i] @ x)) + beta[b, i] for i in range(k))
        torch.testing.assert_close(got[n], want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bank(h, e[rows], c[rows]), bank(h, e, c, rows))  # gathered first: same
    torch.testing.assert_close(bank.module_outputs(h, e, c, rows).sum(2), bank(h, e, c, rows), rtol=1e-5, atol=1e-5)


def test_separate_encoder_reads_the_frozen_base_embeddings_and_round_trips(tmp_path):
    from lora_diffusion.methods.persistence import load_method, save_method

    model = _model("separate")
    enc = model.adapter.encoder
    assert enc.tokens is model.backbone.mlm.get_input_embeddings()  # read, not a table of its own
    assert not any(n.startswith("tokens") for n, _ in enc.named_parameters())
    assert not any("tokens" in k for k in model.adapter.state_dict())
    vocab, dim = model.backbone.vocab_size, model.backbone.hidden_size
    assert sum(p.numel() for p in enc.parameters()) < vocab * dim  # no (V x D) table
    b = _batch(B=2)
    b["input_ids"][1, 1:7] = b["input_ids"][0, 1:7].flip(0) + 1  # another instruction
    with torch.no_grad():
        c = enc(torch.zeros(2, 12, dim), b["instruction_mask"], b["input_ids"])
    assert not torch.allclose(c[0], c[1])  # Enc(c) depends on the instruction from the start
    for bank in model.adapter.banks:
        torch.nn.init.normal_(bank.up)
    steps = torch.tensor([90, 20])
    with torch.no_grad():
        before = model(b["input_ids"], b["attention_mask"], steps, b["generate_mask"], b["instruction_mask"])
    save_method(model, tmp_path / "a")
    again = load_method(tmp_path / "a", model.backbone).eval()
    model.eval()
    with torch.no_grad():
        before = model(b["input_ids"], b["attention_mask"], steps, b["generate_mask"], b["instruction_mask"])
        after = again(b["input_ids"], b["attention_mask"], steps, b["generate_mask"], b["instruction_mask"])
    assert torch.equal(before, after) and again.adapter.encoder.tokens is model.backbone.mlm.get_input_embeddings()


def test_soft_threshold_shrinks_every_singular_value_by_tau():
    from lora_diffusion.methods.trajectory_bank import soft_threshold

    q1, _ = torch.linalg.qr(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))
    q2, _ = torch.linalg.qr(torch.randn(4, 3, generator=torch.Generator().manual_seed(1)))
    w = q1 @ torch.diag(torch.tensor([3.0, 1.0, 0.5])) @ q2.t()  # (5, 4), singular values 3, 1, 0.5
    out = soft_threshold(w, 0.7)
    torch.testing.assert_close(torch.linalg.svdvals(out)[:3], torch.tensor([2.3, 0.3, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, q1 @ torch.diag(torch.tensor([2.3, 0.3, 0.0])) @ q2.t(), atol=1e-5, rtol=0)
    assert torch.equal(soft_threshold(torch.zeros(3, 2), 0.1), torch.zeros(3, 2))


def _down_norms(model):
    return [float(bank.down.weight.detach().norm()) for bank in model.adapter.banks]


@pytest.mark.parametrize("penalty", ["proximal", "loss"])
def test_rank_penalty_modes(penalty, tmp_path):
    """The proximal step leaves the low-rank modules alive under Adam; the penalty in the loss
    shrinks W_B at about lr per step from the start (W_A = 0: no data gradient reaches W_B)."""
    from lora_diffusion.config import TrainConfig
    from lora_diffusion.data.classification import SST2, encode_examples, read_labelled_tsv
    from lora_diffusion.demo import resource
    from lora_diffusion.finetune import build_method_model, finetune

    base = tiny_backbone("bert", seed=0)
    data = encode_examples(read_labelled_tsv(resource("sst2_train_sample.tsv"), {0, 1})[:32], SST2, base.tokenizer, 32)
    model, fp = build_method_model(base, "trajectory", {**SMALL, "lambda_rank": 0.01, "rank_penalty": penalty})
    start = _down_norms(model)
    assert model.regularization()["rank"][1] == (0.01 if penalty == "loss" else 0.0)
    cfg = TrainConfig(max_steps=30, lr=1e-2, warmup_steps=0, batch_size=8, micro_batch_size=8, save_every=0,
                      log_every=10, seed=0)
    finetune(model, data, cfg, tmp_path, fp, progress=False)
    ratios = [a / b for a, b in zip(_down_norms(model), start)]
    if penalty == "proximal":
        assert min(ratios) > 0.8, ratios
    else:
        assert max(ratios) < 0.5, ratios


def test_proximal_step_of_the_adapter_is_lr_times_lambda():
    model = _model(lambda_rank=0.5)
    for bank in model.adapter.banks:
        torch.nn.init.normal_(bank.up)
    before = [(torch.linalg.svdvals(a), torch.linalg.svdvals(b)) for f in model.adapter.all_factors() for a, b in f]
    model.after_optimizer_step(0.1)  # tau = 0.05
    after = [(torch.linalg.svdvals(a), torch.linalg.svdvals(b)) for f in model.adapter.all_factors() for a, b in f]
    for (a0, b0), (a1, b1) in zip(before, after):
        torch.testing.assert_close(a1, (a0 - 0.05).clamp(min=0), atol=1e-5, rtol=0)
        torch.testing.assert_close(b1, (b0 - 0.05).clamp(min=0), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="rank_penalty"):
        TrajectoryConfig(rank_penalty="l2")
