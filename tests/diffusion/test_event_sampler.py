"""The exact event-driven sampler: reveal steps drawn first, identical samples to the
step-by-step loop, trunk passes only at reveal steps."""

import pytest
import torch

from lora_diffusion.diffusion import get_schedule
from lora_diffusion.diffusion.sampler import SamplerConfig, draw_tokens, reveal_steps, sample

MASK, V = 3, 13


def context_denoise(calls):
    """Logits depend on the whole row (its revealed tokens), the position and t, so skipping a
    step or a row would change the sample if it mattered."""

    def denoise(x, steps, select, rows=None):
        xs, st = (x, steps) if rows is None else (x[rows], steps[rows])
        sel = select if rows is None else select[rows]
        calls.append(xs.shape[0])
        seen = torch.where(xs == MASK, 0, xs).sum(1, keepdim=True).float()  # (R, 1)
        pos = sel.nonzero()
        feats = seen[pos[:, 0]] * 0.37 + pos[:, 1:2] * 1.3 + st[pos[:, 0], None] * 0.11  # (N, 1)
        return torch.sin(feats * torch.arange(1, V + 1).float())  # (N, V)

    return denoise


def _inputs(B=5, prompt=3, resp=9):
    x = torch.randint(4, V, (B, prompt + resp), generator=torch.Generator().manual_seed(7))
    gen = torch.zeros_like(x, dtype=torch.bool)
    gen[:, prompt:] = True
    gen[min(1, B - 1), -2:] = B == 1  # ragged responses (B > 1)
    return x, gen


@pytest.mark.parametrize("greedy", [True, False])
@pytest.mark.parametrize("block", [0, 4])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_event_driven_equals_step_by_step(greedy, block, schedule):
    x, gen = _inputs()
    event_calls, step_calls = [], []
    results = []
    for event, calls in ((True, event_calls), (False, step_calls)):
        cfg = SamplerConfig(num_steps=40, greedy=greedy, block_length=block, event_driven=event, top_k=5)
        results.append(sample(context_denoise(calls), x, gen, MASK, get_schedule(schedule), cfg,
                              torch.Generator().manual_seed(11)))
    assert torch.equal(results[0], results[1])
    assert not (results[0] == MASK).any()
    assert len(event_calls) < len(step_calls)
    assert sum(event_calls) <= int(gen.sum())  # trunk rows <= response tokens, not B * T


def test_event_driven_trunk_passes_are_the_distinct_reveal_steps():
    x, gen = _inputs(B=1, prompt=2, resp=30)
    calls = []
    sample(context_denoise(calls), x, gen, MASK, get_schedule("linear"), SamplerConfig(num_steps=100),
           torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    tau = reveal_steps(torch.rand(x.shape, generator=g, dtype=torch.float64), get_schedule("linear"), 100)
    assert len(calls) == len(set(tau[gen].tolist())) <= 30


def test_reveal_steps_by_hand_linear():
    # linear, T = 4: m_s = 1 - alpha_s = s / 4 -> tau = min{s : s / 4 > u}
    u = torch.tensor([[0.0, 0.24, 0.25, 0.3, 0.74, 0.99]], dtype=torch.float64)
    assert reveal_steps(u, get_schedule("linear"), 4).tolist() == [[1, 1, 2, 2, 3, 4]]


def test_reveal_steps_follow_the_reverse_process():
    """P(tau = s) = (alpha_{s-1} - alpha_s) / (1 - alpha_T)."""
    from lora_diffusion.diffusion import alpha_at_step

    sched, T, n = get_schedule("cosine"), 8, 200_000
    tau = reveal_steps(torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64), sched, T)
    counts = torch.bincount(tau, minlength=T + 1)[1:].double() / n
    a = alpha_at_step(sched, torch.arange(T + 1), T)
    expected = (a[:-1] - a[1:]) / (1 - a[-1])
    assert torch.allclose(counts, expected, atol=4e-3)


def test_inverse_cdf_draw_by_hand():
    probs = torch.tensor([0.2, 0.5, 0.3])
    logits = probs.log()[None].expand(5, 3)
    u = torch.tensor([0.1, 0.2, 0.69, 0.7, 0.999])
    tokens, conf = draw_tokens(logits, SamplerConfig(temperature=1.0), u=u)
    assert tokens.tolist() == [0, 1, 1, 2, 2]
    assert torch.allclose(conf, probs[tokens])


def test_trajectory_model_event_driven_equals_step_by_step(tokenizer):
    from lora_diffusion.data.classification import SST2, encode_examples
    from lora_diffusion.data.encoding import pad_collate
    from lora_diffusion.finetune import build_method_model
    from lora_diffusion.generation import generate
    from lora_diffusion.testing import tiny_backbone

    base = tiny_backbone("bert", seed=0)
    model, _ = build_method_model(base, "trajectory", {"ranks": [8, 4, 2]}, seed=0)
    with torch.no_grad():
        for p in model.adapter.parameters():
            p.add_(0.1 * torch.randn_like(p))
    rows = encode_examples([("a fine film", 1), ("dull", 0), ("so so", 1)], SST2, tokenizer)
    batch = pad_collate([rows[i] for i in range(3)], base.pad_token_id)
    batch["generate_mask"] |= batch["instruction_mask"]  # generate the sentences too: many tokens
    batch["instruction_mask"] = torch.zeros_like(batch["instruction_mask"])
    outs = [generate(model, batch, SamplerConfig(num_steps=30, event_driven=e), torch.Generator().manual_seed(5))
            for e in (True, False)]
    assert torch.equal(outs[0], outs[1])
