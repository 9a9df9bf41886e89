"""Parallel decoding (confidence threshold, K tokens per call, with or without semi-AR blocks):
trunk passes counted through the ``denoise`` callable against hand-computed values.

Baseline for threshold 1.0 (never parallel: exactly one reveal per call): the low-confidence
sampler with the linear schedule and T equal to the response length (one reveal per step),
which it reproduces exactly: same reveals in the same order, same t at every call, same draws."""

import math

import pytest
import torch

from lora_diffusion.diffusion import get_schedule
from lora_diffusion.diffusion.sampler import SamplerConfig, block_ids, masked_fraction_step, sample

MASK, V = 3, 13


def context_denoise(calls=None):
    """Logits depend on the row's revealed tokens, the position and t (so a different t, order
    or set of rows would change the sample); ``calls`` logs (t per row asked, positions asked)."""

    def denoise(x, steps, select, rows=None):
        if calls is not None:
            calls.append((steps[rows].tolist(), select.nonzero().tolist()))
        xs, st, sel = (x, steps, select) if rows is None else (x[rows], steps[rows], select[rows])
        seen = torch.where(xs == MASK, 0, xs).sum(1, keepdim=True).float()
        pos = sel.nonzero()
        feats = seen[pos[:, 0]] * 0.37 + pos[:, 1:2] * 1.3 + st[pos[:, 0], None] * 0.11
        return 3.0 * torch.sin(feats * torch.arange(1, V + 1).float())

    return denoise


def _inputs(B=3, prompt=2, resp=8, ragged=False):
    x = torch.randint(4, V, (B, prompt + resp), generator=torch.Generator().manual_seed(7))
    gen = torch.zeros_like(x, dtype=torch.bool)
    gen[:, prompt:] = True
    if ragged and B > 1:
        gen[1, -3:] = False
    return x, gen


def _run(cfg, x, gen, denoise, seed=0, schedule="linear"):
    return sample(denoise, x, gen, MASK, get_schedule(schedule), cfg, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("strategy", ["low_confidence", "margin"])
@pytest.mark.parametrize("greedy", [True, False])
@pytest.mark.parametrize("block", [0, 4])
@pytest.mark.parametrize("one_per_call", [{"parallel": "threshold", "threshold": 1.0},
                                          {"parallel": "fixed", "tokens_per_call": 1}])
def test_one_per_call_is_the_low_confidence_sampler_with_T_equal_to_the_response_length(
        strategy, greedy, block, one_per_call):
    resp = 8
    x, gen = _inputs(resp=resp)
    ref_calls, par_calls = [], []
    common = {"num_steps": resp, "strategy": strategy, "greedy": greedy, "temperature": 0.8, "block_length": block}
    ref = _run(SamplerConfig(**common), x, gen, context_denoise(ref_calls), seed=5)
    par = _run(SamplerConfig(**common, **one_per_call), x, gen, context_denoise(par_calls), seed=5)
    assert torch.equal(par, ref)
    assert par_calls == ref_calls  # same t for every row and the same positions at every call
    assert len(par_calls) == resp  # exactly one trunk pass per response token
    n = block or resp  # 3 rows, each asked for its still-masked positions of the active block
    assert [len(pos) for _, pos in par_calls] == [3 * (n - k % n) for k in range(resp)]


@pytest.mark.parametrize("parallel", [{"parallel": "threshold", "threshold": 0.5},
                                      {"parallel": "threshold", "threshold": 0.0},
                                      {"parallel": "fixed", "tokens_per_call": 3}])
@pytest.mark.parametrize("strategy", ["ancestral", "low_confidence", "margin"])
@pytest.mark.parametrize("block", [0, 3])
def test_no_mask_left_prompt_kept_and_seeded(parallel, strategy, block):
    x, gen = _inputs(B=4, resp=10, ragged=True)
    cfg = SamplerConfig(num_steps=20, strategy=strategy, block_length=block, greedy=False, **parallel)
    out = _run(cfg, x, gen, context_denoise(), seed=3, schedule="cosine")
    assert not (out == MASK).any()
    assert torch.equal(out[~gen], x[~gen])
    assert torch.equal(out, _run(cfg, x, gen, context_denoise(), seed=3, schedule="cosine"))
    uniform = lambda x_t, steps, select, rows=None: torch.zeros(int(select.sum()), V)  # noqa: E731
    a, b = (_run(cfg, x, gen, uniform, seed=s) for s in (1, 2))
    assert not torch.equal(a, b)  # the draws come from the generator


def test_with_a_context_free_model_every_greedy_decoder_gives_the_exact_samplers_output():
    """The exact (ancestral) sampler reveals positions in a model-independent random order, so a
    confidence-ordered decoder can only reproduce it where the order does not matter: a model
    whose greedy prediction depends on the position alone."""
    x, gen = _inputs(B=3, resp=8, ragged=True)

    def positional(x_t, steps, select, rows=None):
        pos = select.nonzero()[:, 1]
        logits = torch.full((pos.shape[0], V), -5.0)
        logits[torch.arange(pos.shape[0]), 4 + pos % 7] = 5.0 + 0.1 * pos
        return logits

    exact = _run(SamplerConfig(num_steps=16, greedy=True), x, gen, positional)
    for options in ({"parallel": "threshold", "threshold": 1.0}, {"parallel": "threshold", "threshold": 0.5},
                    {"parallel": "fixed", "tokens_per_call": 3, "block_length": 4}):
        assert torch.equal(_run(SamplerConfig(num_steps=16, greedy=True, **options), x, gen, positional), exact)


def test_threshold_zero_reveals_a_whole_block_per_call():
    x, gen = _inputs(B=2, resp=9)
    calls = []
    _run(SamplerConfig(num_steps=9, parallel="threshold", threshold=0.0, block_length=4), x, gen,
         context_denoise(calls))
    assert len(calls) == 3  # blocks of 4, 4 and 1


def test_threshold_by_hand_three_confident_positions_in_one_call():
    """A model confident (p = 0.99) at exactly positions 1, 4 and 6 of 8, and unconfident
    (p = 0.5) elsewhere until those three are revealed, then confident everywhere: call 1
    reveals the three (t = T = 8), call 2 the other five (5 of 8 masked: linear t = 5)."""
    x, gen = _inputs(B=1, prompt=0, resp=8)
    calls = []

    def denoise(x_t, steps, select, rows=None):
        calls.append((int(steps[0]), select.nonzero()[:, 1].tolist()))
        done = int((x_t[0] != MASK).sum())
        out = []
        for pos in select.nonzero()[:, 1].tolist():
            p = torch.full((V,), 0.01 / (V - 1))
            if pos in (1, 4, 6) or done >= 3:
                p[4 + pos % 5] = 0.99  # 0.9908 once [MASK] is ruled out
            else:
                p[4 + pos % 5], p[5 + pos % 5] = 0.5, 0.49 - 0.01 * (V - 3) / (V - 1)
            out.append(torch.log(p))
        return torch.stack(out)

    out = _run(SamplerConfig(num_steps=8, parallel="threshold", threshold=0.9, greedy=True), x, gen, denoise)
    assert calls == [(8, list(range(8))), (5, [0, 2, 3, 5, 7])]
    assert out[0].tolist() == [4 + p % 5 for p in range(8)]
    # never confident: one (the most confident) per call, 8 calls
    calls.clear()
    _run(SamplerConfig(num_steps=8, parallel="threshold", threshold=0.995, greedy=True), x, gen, denoise)
    assert len(calls) == 8 and [len(pos) for _, pos in calls] == list(range(8, 0, -1))


@pytest.mark.parametrize("resp,k,block", [(10, 3, 0), (10, 3, 4), (7, 2, 0), (7, 7, 0), (12, 5, 5), (6, 4, 3)])
def test_fixed_k_takes_ceil_n_over_k_calls_per_block(resp, k, block):
    x, gen = _inputs(B=2, resp=resp)
    calls = []
    _run(SamplerConfig(num_steps=50, parallel="fixed", tokens_per_call=k, block_length=block), x, gen,
         context_denoise(calls))
    sizes = [min(block, resp - lo) for lo in range(0, resp, block)] if block else [resp]
    assert len(calls) == sum(math.ceil(n / k) for n in sizes)
    asked = [len(pos) // 2 for _, pos in calls]  # per row: still-masked positions of the block
    expected = [n - j * k for n in sizes for j in range(math.ceil(n / k))]
    assert asked == expected


@pytest.mark.parametrize("parallel", [{"parallel": "threshold", "threshold": 0.3},
                                      {"parallel": "fixed", "tokens_per_call": 2}])
def test_blocks_fill_left_to_right(parallel):
    x, gen = _inputs(B=2, prompt=2, resp=9, ragged=True)
    blocks = block_ids(gen, 3)
    states = []

    def denoise(x_t, steps, select, rows=None):
        states.append((x_t.clone(), select.clone()))
        return context_denoise()(x_t, steps, select, rows)

    out = _run(SamplerConfig(num_steps=9, block_length=3, **parallel), x, gen, denoise)
    assert not (out == MASK).any()
    current = -1
    for state, select in states:
        b = int(blocks[select].max())
        assert int(blocks[select].min()) == b >= current  # one block per call, never going back
        current = b
        assert not (state[(blocks >= 0) & (blocks < b)] == MASK).any()  # earlier blocks are done
        assert (state[blocks > b] == MASK).all()  # later blocks untouched


def test_masked_fraction_step_by_hand():
    lin, cos = get_schedule("linear"), get_schedule("cosine")
    # linear, T = 10, block of 5: t = min{s : s / 10 >= still / 5} = 2 * still
    still = torch.tensor([5, 4, 3, 1])
    assert masked_fraction_step(still, torch.full((4,), 5), lin, 10).tolist() == [10, 8, 6, 2]
    # linear, T = 4, block of 3: ceil(4 * still / 3)
    assert masked_fraction_step(torch.tensor([3, 2, 1]), torch.full((3,), 3), lin, 4).tolist() == [4, 3, 2]
    # cosine, T = 9 (m_T = 1): 1 - cos(pi s / 18) >= 1/2 <=> s >= 6;
    # >= 1/4 <=> s >= 18 acos(3/4) / pi = 4.14 -> s = 5; a full block -> T
    assert masked_fraction_step(torch.tensor([2, 1, 4]), torch.tensor([4, 4, 4]), cos, 9).tolist() == [6, 5, 9]


def test_bad_parallel_config():
    with pytest.raises(ValueError, match="parallel"):
        SamplerConfig(parallel="speculative")
    with pytest.raises(ValueError, match="threshold"):
        SamplerConfig(parallel="threshold", threshold=1.5)
    with pytest.raises(ValueError, match="tokens_per_call"):
        SamplerConfig(parallel="fixed", tokens_per_call=0)


def test_generation_options_map_and_validate_parallel():
    from lora_diffusion.config import ConfigError
    from lora_diffusion.generation import GenerationOptions

    cfg = GenerationOptions(parallel="threshold", threshold=0.7, block_length=8, remasking="margin").sampler(64)
    assert (cfg.parallel, cfg.threshold, cfg.block_length, cfg.strategy, cfg.num_steps) == \
        ("threshold", 0.7, 8, "margin", 64)
    assert GenerationOptions(parallel="fixed", tokens_per_call=4).sampler(10).tokens_per_call == 4
    assert GenerationOptions().sampler(10).parallel == "none"
    for kwargs, field in (({"parallel": "fast"}, "parallel"), ({"threshold": -0.1}, "threshold"),
                          ({"threshold": 2}, "threshold"), ({"tokens_per_call": 0}, "tokens_per_call")):
        with pytest.raises(ConfigError, match=field) as err:
            GenerationOptions(**kwargs)
        assert err.value.field == field


def test_cli_flags_land_on_the_sampling_config():
    import argparse

    from lora_diffusion.cli.common import add_sampling, sampling_overrides
    from lora_diffusion.cli.generate import GenerateConfig
    from lora_diffusion.config import ConfigError, load_config

    p = argparse.ArgumentParser()
    add_sampling(p)
    assert sampling_overrides(p.parse_args(["--parallel", "threshold", "--threshold", "0.8"])) == \
        {"sampling.parallel": "threshold", "sampling.threshold": 0.8}
    assert sampling_overrides(p.parse_args(["--tokens-per-call", "4"])) == \
        {"sampling.parallel": "fixed", "sampling.tokens_per_call": 4}
    assert sampling_overrides(p.parse_args(["--threshold", "0.5"]))["sampling.parallel"] == "threshold"
    with pytest.raises(ConfigError, match="--parallel"):
        sampling_overrides(p.parse_args(["--threshold", "0.5", "--tokens-per-call", "2"]))
    with pytest.raises(SystemExit):
        p.parse_args(["--parallel", "speculative"])
    base = {"base": "b", "prompts": ["p"]}
    cfg = load_config(GenerateConfig, None, {**base, **sampling_overrides(p.parse_args(["--tokens-per-call", "3"]))})
    assert cfg.sampling.sampler(10).parallel == "fixed" and cfg.sampling.tokens_per_call == 3
    with pytest.raises(ConfigError, match="sampling.threshold|threshold"):
        load_config(GenerateConfig, None, {**base, "sampling.threshold": 1.5})


SMALL = {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 16}


@pytest.mark.parametrize("options,calls", [
    ({"parallel": "fixed", "tokens_per_call": 2}, 3),  # ceil(6 / 2)
    ({"parallel": "fixed", "tokens_per_call": 2, "block_length": 4}, 3),  # ceil(4 / 2) + ceil(2 / 2)
    ({"parallel": "fixed", "tokens_per_call": 4, "block_length": 3}, 2),  # one call per block
    ({"parallel": "threshold", "threshold": 1.0}, 6),  # never parallel: one per response token
    ({"parallel": "threshold", "threshold": 0.0}, 1),  # everything above 0: one call
])
def test_trajectory_hook_runs_at_every_call_of_a_tiny_model(options, calls):
    """Through ``generation.generate`` with the trajectory method on a real tiny backbone: one
    trunk pass per sampler call, and the adapter applied at each with that call's t."""
    from lora_diffusion.finetune import build_method_model
    from lora_diffusion.generation import generate
    from lora_diffusion.testing import tiny_backbone

    model, _ = build_method_model(tiny_backbone("bert", seed=0), "trajectory", SMALL, seed=0)
    x, gen = _inputs(B=2, prompt=3, resp=6)
    x = torch.randint(1000, 2000, x.shape, generator=torch.Generator().manual_seed(0))
    instr = ~gen
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "generate_mask": gen, "instruction_mask": instr}
    seen_adapter, seen_trunk = [], []
    original = model.adapter.forward

    def spy(h, steps, *a, **k):
        seen_adapter.append(steps.tolist())
        return original(h, steps, *a, **k)

    model.adapter.forward = spy
    hook = model.backbone.trunk.register_forward_hook(lambda *_: seen_trunk.append(1))
    try:
        cfg = SamplerConfig(num_steps=12, greedy=True, **options)
        out = generate(model, batch, cfg, torch.Generator().manual_seed(0))
        again = generate(model, batch, cfg, torch.Generator().manual_seed(0))
    finally:
        hook.remove()
        model.adapter.forward = original
    assert len(seen_trunk) == len(seen_adapter) == 2 * calls  # two generate runs
    if options == {"parallel": "fixed", "tokens_per_call": 2}:  # 6, 4, 2 of 6 masked; T = 12
        assert seen_adapter[:calls] == [[12, 12], [8, 8], [4, 4]]
    assert all(1 <= s <= 12 for step in seen_adapter for s in step)
    assert not (out[gen] == model.backbone.mask_token_id).any() and torch.equal(out[~gen], x[~gen])
    assert torch.equal(out, again)
