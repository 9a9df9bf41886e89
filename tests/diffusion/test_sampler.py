import math

import pytest
import torch

from lora_diffusion.diffusion import alpha_at_step, get_schedule
from lora_diffusion.diffusion.sampler import SamplerConfig, block_ids, draw_tokens, sample

MASK, V = 3, 11


def fixed_denoise(log=None):
    """A model whose prediction depends on position only: token 4 + (pos % 5)."""

    def denoise(x, steps, select, rows=None):
        if log is not None:
            log.append((int(steps[0]), int((x == MASK).sum())))
        pos = select.nonzero()[:, 1]
        logits = torch.full((pos.shape[0], V), -5.0)
        logits[torch.arange(pos.shape[0]), 4 + pos % 5] = 5.0
        return logits

    return denoise


def _inputs(B=4, prompt=3, resp=8):
    x = torch.full((B, prompt + resp), 7)
    gen = torch.zeros_like(x, dtype=torch.bool)
    gen[:, prompt:] = True
    return x, gen


@pytest.mark.parametrize("strategy", ["ancestral", "low_confidence", "margin"])
@pytest.mark.parametrize("block", [0, 3])
def test_no_mask_left_prompt_kept_and_seeded(strategy, block):
    x, gen = _inputs()
    cfg = SamplerConfig(num_steps=20, strategy=strategy, block_length=block)
    out = sample(fixed_denoise(), x, gen, MASK, get_schedule("cosine"), cfg, torch.Generator().manual_seed(0))
    assert not (out == MASK).any()
    assert torch.equal(out[~gen], x[~gen])
    again = sample(fixed_denoise(), x, gen, MASK, get_schedule("cosine"), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_same_seed_same_output_different_seed_differs_with_temperature():
    x, gen = _inputs(B=8, resp=16)

    def noisy(x_t, steps, select, rows=None):
        return torch.zeros(int(select.sum()), V)  # uniform: samples depend only on the RNG

    cfg = SamplerConfig(num_steps=10, temperature=1.0)
    a = sample(noisy, x, gen, MASK, get_schedule("linear"), cfg, torch.Generator().manual_seed(1))
    b = sample(noisy, x, gen, MASK, get_schedule("linear"), cfg, torch.Generator().manual_seed(1))
    c = sample(noisy, x, gen, MASK, get_schedule("linear"), cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_unmasked_per_step_follows_schedule_in_expectation(schedule):
    """Before step s the fraction still masked is 1 - alpha_s (in expectation)."""
    B, resp, T = 400, 50, 10
    x, gen = _inputs(B=B, prompt=0, resp=resp)
    log = []
    sample(fixed_denoise(log), x, gen, MASK, get_schedule(schedule), SamplerConfig(num_steps=T),
           torch.Generator().manual_seed(0))
    n = B * resp
    for step, still in log:
        expected = n * (1 - float(alpha_at_step(get_schedule(schedule), step, T)))
        assert abs(still - expected) <= 5 * n**0.5, (step, still, expected)


def test_low_confidence_reveals_the_scheduled_count():
    B, resp, T = 2, 20, 10
    x, gen = _inputs(B=B, prompt=0, resp=resp)
    log = []
    sample(fixed_denoise(log), x, gen, MASK, get_schedule("linear"), SamplerConfig(num_steps=T, strategy="low_confidence"),
           torch.Generator().manual_seed(0))
    # linear: before step s exactly round(20 * s / 10) = 2s positions are masked per row
    assert [still for _, still in log] == [B * 2 * s for s in range(T, 0, -1)]


def test_ancestral_asks_only_for_revealed_positions_of_revealing_rows():
    calls = []

    def denoise(x, steps, select, rows=None):
        calls.append((int(select.sum()), rows.tolist()))
        assert set(select.any(1).nonzero().squeeze(1).tolist()) == set(rows.tolist())
        return fixed_denoise()(x, steps, select)

    x, gen = _inputs(B=6, prompt=2, resp=1)
    sample(denoise, x, gen, MASK, get_schedule("linear"), SamplerConfig(num_steps=50), torch.Generator().manual_seed(0))
    assert sum(n for n, _ in calls) == 6  # one response token per row: each row is computed once
    assert sum(len(r) for _, r in calls) == 6


def test_blocks_fill_left_to_right():
    x, gen = _inputs(B=1, prompt=2, resp=6)
    seen = []

    def denoise(x_t, steps, select, rows=None):
        seen.append(x_t.clone())
        return fixed_denoise()(x_t, steps, select, rows)

    sample(denoise, x, gen, MASK, get_schedule("linear"), SamplerConfig(num_steps=6, block_length=3),
           torch.Generator().manual_seed(0))
    for state in seen:
        second_started = (state[0, 5:] != MASK).any()
        first_done = not (state[0, 2:5] == MASK).any()
        assert first_done or not second_started
    assert torch.equal(block_ids(gen, 3)[0], torch.tensor([-1, -1, 0, 0, 0, 1, 1, 1]))


def test_greedy_and_top_k():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 9.0]])
    tok, conf = draw_tokens(logits, SamplerConfig(greedy=True), torch.Generator())
    assert tok.tolist() == [1, 2] and torch.allclose(conf[1], torch.softmax(logits[1], 0)[2])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([draw_tokens(logits[:1].expand(50, 3), SamplerConfig(top_k=1), g)[0] for _ in range(3)])
    assert (draws == 1).all()


def test_hook_changes_samples(tiny_bert):
    from lora_diffusion.generation import generate

    x, gen = _inputs(B=2, prompt=3, resp=4)
    x = torch.randint(1000, 2000, x.shape)
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "generate_mask": gen}
    cfg = SamplerConfig(num_steps=8, greedy=True)
    plain = generate(tiny_bert, batch, cfg, torch.Generator().manual_seed(0))
    shift = torch.randn(tiny_bert.hidden_size, generator=torch.Generator().manual_seed(1)) * 50
    calls = []

    def perturb(h, steps):
        calls.append(int(steps[0]))
        return h + shift

    pert = generate(tiny_bert, batch, cfg, torch.Generator().manual_seed(0), perturb=perturb)
    assert calls and not torch.equal(plain, pert)
    assert all(1 <= c <= 8 for c in calls)


def test_bad_sampler_config():
    with pytest.raises(ValueError, match="strategy"):
        SamplerConfig(strategy="bogus")
    with pytest.raises(ValueError, match="num_steps"):
        SamplerConfig(num_steps=0)


def test_margin_confidence_is_the_top2_gap():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25]]))
    tokens, gap = draw_tokens(logits, SamplerConfig(greedy=True), margin=True)
    assert tokens.tolist() == [0, 0] and torch.allclose(gap, torch.tensor([0.2, 0.05]))
    _, prob = draw_tokens(logits, SamplerConfig(greedy=True))
    assert torch.allclose(prob, torch.tensor([0.5, 0.4]))


def test_margin_reveals_the_widest_gap_first():
    """Position 0: p = (0.5, 0.45, ...) (more probable, small margin); position 1:
    p = (0.4, 0.15, ...) (less probable, wide margin). One reveal per step: low-confidence
    reveals position 0 first, margin position 1."""
    x, gen = _inputs(B=1, prompt=0, resp=2)
    probs = {0: {4: 0.5, 5: 0.45}, 1: {6: 0.4, 7: 0.15, 8: 0.15, 9: 0.15, 10: 0.15}}
    for strategy, revealed_first in (("low_confidence", [0]), ("margin", [1])):
        seen = []

        def denoise(x_t, steps, select, rows=None, seen=seen):
            seen.append((x_t != MASK).nonzero()[:, 1].tolist())
            out = []
            for pos in select.nonzero()[:, 1].tolist():
                p = torch.full((V,), 1e-6)
                for tok, value in probs[pos].items():
                    p[tok] = value
                out.append(torch.log(p / p.sum()))
            return torch.stack(out)

        cfg = SamplerConfig(num_steps=2, strategy=strategy, greedy=True)
        sample(denoise, x, gen, MASK, get_schedule("linear"), cfg, torch.Generator().manual_seed(0))
        assert seen == [[], revealed_first], strategy


def test_generation_options_map_remasking_and_validate():
    from lora_diffusion.config import ConfigError
    from lora_diffusion.generation import GenerationOptions

    cfg = GenerationOptions(remasking="random", num_steps=0, block_length=4).sampler(100)
    assert cfg.strategy == "ancestral" and cfg.event_driven and cfg.num_steps == 100 and cfg.block_length == 4
    assert GenerationOptions(remasking="margin", temperature=0.5, greedy=False).sampler(10).strategy == "margin"
    with pytest.raises(ConfigError, match="remasking"):
        GenerationOptions(remasking="topk")


def test_end_bias_moves_the_end_tokens_probability_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))  # token 0 plays the end token
    cfg = SamplerConfig(greedy=True, end_bias=-math.log(4.0), end_token_id=0)
    tok, prob = draw_tokens(logits, cfg)
    # p_end = 0.5 / 4 / (0.5 / 4 + 0.5) = 0.2; the others 0.3 / 0.625 = 0.48, 0.2 / 0.625 = 0.32
    assert tok.tolist() == [1] and torch.allclose(prob, torch.tensor([0.48]))
    assert draw_tokens(logits, SamplerConfig(greedy=True, end_bias=-math.log(4.0)))[0].tolist() == [0]  # no end id
    unbiased = logits.clone()
    draw_tokens(logits, cfg)
    assert torch.equal(logits, unbiased)  # the caller's logits are left alone
    with pytest.raises(ValueError, match="end_bias"):
        SamplerConfig(end_bias=float("-inf"))
