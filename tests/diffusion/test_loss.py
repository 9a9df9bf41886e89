import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_diffusion.diffusion import diffusion_loss, elbo_loss, get_schedule, simple_loss, token_nll


def _toy():
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    targets = torch.tensor([1, 0])
    return logits, targets


def test_token_nll_by_hand():
    logits, targets = _toy()
    assert torch.allclose(token_nll(logits, targets), torch.tensor([math.log(3.0), math.log(2.0)]))


def test_simple_loss_is_mean_per_masked_token():
    logits, targets = _toy()
    assert simple_loss(token_nll(logits, targets)).item() == torch.tensor((math.log(3) + math.log(2)) / 2).item()


def test_elbo_loss_by_hand():
    # linear, T = 4: w_s = 4 * (1/4) / (s/4) = 4 / s -> w_2 = 2, w_4 = 1; 3 + 5 generate tokens
    logits, targets = _toy()
    nll = token_nll(logits, targets)
    got = elbo_loss(nll, torch.tensor([0, 1]), torch.tensor([2, 4]), torch.tensor([3, 5]), get_schedule("linear"), 4)
    assert abs(got.item() - (2 * math.log(3) + 1 * math.log(2)) / 8) < 1e-6


def test_empty_selection_gives_zero_with_graph():
    w = torch.zeros(4, 7, requires_grad=True)
    logits = (torch.zeros(0, 4) @ w)
    loss = diffusion_loss("simple", logits, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                          torch.tensor([1]), torch.tensor([3]), get_schedule("linear"), 10)
    loss.backward()
    assert loss.item() == 0.0 and w.grad is not None


@settings(max_examples=6, deadline=None)
@given(extra_pad=st.integers(1, 12), seed=st.integers(0, 1000))
def test_loss_invariant_to_padding_length(tiny_bert, extra_pad, seed):
    g = torch.Generator().manual_seed(seed)
    B, L = 3, 12
    x0 = torch.randint(1000, 3000, (B, L), generator=g)
    attn = torch.ones(B, L, dtype=torch.long)
    attn[2, 9:] = 0
    gen = attn.bool().clone()
    gen[:, :2] = False
    masked = gen & (torch.rand(B, L, generator=g) < 0.5)
    masked[0, 5] = True
    x_t = torch.where(masked, torch.full_like(x0, tiny_bert.mask_token_id), x0)
    steps = torch.tensor([10, 50, 90])

    def loss_of(x_t, attn, masked, gen):
        with torch.no_grad():
            logits = tiny_bert(x_t, attn, steps, select=masked)
        rows = masked.nonzero()[:, 0]
        return [diffusion_loss(k, logits, x0_pad[masked], rows, steps, gen.sum(1), get_schedule("linear"), 100).item()
                for k in ("simple", "elbo")]

    x0_pad = x0
    base = loss_of(x_t, attn, masked, gen)
    pad = lambda t, v: torch.cat([t, torch.full((B, extra_pad), v, dtype=t.dtype)], 1)  # noqa: E731
    x0_pad = pad(x0, 0)
    padded = loss_of(pad(x_t, 0), pad(attn, 0), pad(masked, False), pad(gen, False))
    assert all(abs(a - b) < 1e-5 for a, b in zip(base, padded))
