import pytest
import torch

from lora_diffusion.analysis import effective_rank, phase_steps


def test_effective_rank_known_answers():
    assert effective_rank(torch.tensor([1.0, 1.0, 1.0, 1.0])) == pytest.approx(4.0)
    assert effective_rank(torch.tensor([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    # p = (0.5, 0.25, 0.25): H = 1.5 ln 2, r_eff = 2^1.5
    assert effective_rank(torch.tensor([2.0, 1.0, 1.0])) == pytest.approx(2 ** 1.5)
    assert effective_rank(torch.zeros(3)) == 0.0


def test_phase_steps_partition_T():
    p = phase_steps(100, [1 / 3, 2 / 3])
    assert p["late"] == list(range(1, 34)) and p["mid"] == list(range(34, 67)) and p["early"] == list(range(67, 101))
