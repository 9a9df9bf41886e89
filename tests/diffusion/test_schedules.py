import math

import pytest
import torch

from lora_diffusion.diffusion.schedules import (
    SCHEDULES,
    alpha_at_step,
    elbo_weight,
    get_schedule,
    step_to_time,
    time_for_mask_rate,
    time_to_step,
    unmask_probability,
)


def test_alpha_known_values():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(get_schedule("linear").alpha(t), torch.tensor([1.0, 0.75, 0.5, 0.0], dtype=torch.float64))
    cos = get_schedule("cosine").alpha(t)
    assert torch.allclose(cos, torch.tensor([1.0, math.cos(math.pi / 8), math.sqrt(0.5), 0.0], dtype=torch.float64), atol=1e-12)
    ll = get_schedule("loglinear").alpha(t)
    assert torch.allclose(ll, torch.tensor([1.0, 1 - 0.999 * 0.25, 1 - 0.999 * 0.5, 0.001], dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_derivative_matches_finite_difference(name):
    s = get_schedule(name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    fd = (s.alpha(t + h) - s.alpha(t - h)) / (2 * h)
    assert torch.allclose(s.dalpha(t), fd, atol=1e-6)


def test_step_time_mapping_round_trip():
    steps = torch.arange(1, 101)
    assert torch.equal(time_to_step(step_to_time(steps, 100), 100), steps)
    assert float(step_to_time(50, 100)) == 0.5
    assert int(time_to_step(0.001, 100)) == 1 and int(time_to_step(1.0, 100)) == 100


def test_unmask_probability_by_hand_linear_T4():
    # alpha_s = 1 - s/4: p_s = (alpha_{s-1} - alpha_s) / (1 - alpha_s) = (1/4) / (s/4) = 1/s
    p = unmask_probability(get_schedule("linear"), torch.arange(1, 5), 4)
    assert torch.allclose(p, torch.tensor([1.0, 1 / 2, 1 / 3, 1 / 4], dtype=torch.float64))
    assert torch.allclose(elbo_weight(get_schedule("linear"), torch.arange(1, 5), 4), 4 * p)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_reverse_chain_reveals_everything_and_matches_marginals(name):
    """prod_{s'<=s} ... : P(still masked after steps T..s) = 1 - alpha_{s-1}; last step p_1 = 1."""
    s, T = get_schedule(name), 50
    still = 1.0 - float(alpha_at_step(s, T, T))
    for step in range(T, 0, -1):
        still *= 1.0 - float(unmask_probability(s, step, T))
        assert still == pytest.approx(1.0 - float(alpha_at_step(s, step - 1, T)), abs=1e-9)
    assert still == 0.0


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_discrete_elbo_weight_tends_to_continuous(name):
    s = get_schedule(name)
    T = 100_000
    t = torch.tensor([0.3, 0.6], dtype=torch.float64)
    steps = time_to_step(t, T)
    cont = -s.dalpha(t) / (1 - s.alpha(t))
    assert torch.allclose(elbo_weight(s, steps, T), cont, rtol=1e-3)


def test_unknown_schedule_lists_known():
    with pytest.raises(ValueError, match="known schedules"):
        get_schedule("sigmoid")


def test_time_for_mask_rate_inverts_alpha():
    for name in SCHEDULES:
        s = get_schedule(name)
        t = time_for_mask_rate(s, 0.5)
        assert 1 - float(s.alpha(torch.tensor(t, dtype=torch.float64))) == pytest.approx(0.5, abs=1e-9)
    assert time_for_mask_rate(get_schedule("linear"), 0.15, 100) == 15
