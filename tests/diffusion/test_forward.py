import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_diffusion.diffusion import forward_mask, get_schedule, mask_probability, sample_steps

MASK = 103


def test_sample_steps_range_and_stratified_cover():
    g = torch.Generator().manual_seed(0)
    s = sample_steps(10_000, 100, g)
    assert s.min() >= 1 and s.max() <= 100
    assert abs(s.float().mean().item() - 50.5) < 1.0
    strat = sample_steps(100, 100, g, stratified=True)
    assert torch.equal(strat.sort().values, torch.arange(1, 101))


@settings(max_examples=25, deadline=None)
@given(
    step=st.integers(1, 100),
    prompt=st.integers(0, 20),
    pad=st.integers(0, 20),
    schedule=st.sampled_from(["linear", "cosine", "loglinear"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_mask_rate_matches_schedule_and_spares_prompt_and_padding(step, prompt, pad, schedule, seed):
    B, resp = 64, 64
    L = prompt + resp + pad
    x0 = torch.randint(1000, 2000, (B, L), generator=torch.Generator().manual_seed(seed))
    gen_mask = torch.zeros(B, L, dtype=torch.bool)
    gen_mask[:, prompt : prompt + resp] = True
    p = mask_probability(get_schedule(schedule), torch.full((B,), step), 100)
    x_t, masked = forward_mask(x0, gen_mask, p, MASK, torch.Generator().manual_seed(seed))
    assert not masked[:, :prompt].any() and not masked[:, prompt + resp :].any()
    assert torch.equal(x_t[~masked], x0[~masked]) and (x_t[masked] == MASK).all()
    n = B * resp
    rate = masked.sum().item() / n
    expected = float(p[0])
    assert abs(rate - expected) <= 5 * (expected * (1 - expected) / n) ** 0.5 + 1e-9


def test_forward_mask_is_seeded():
    x0 = torch.randint(1000, 2000, (4, 16))
    g = torch.ones(4, 16, dtype=torch.bool)
    p = torch.full((4,), 0.5, dtype=torch.float64)
    a = forward_mask(x0, g, p, MASK, torch.Generator().manual_seed(3))
    b = forward_mask(x0, g, p, MASK, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
