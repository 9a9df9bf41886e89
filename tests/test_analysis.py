import math

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


def test_factor_spectra_against_hand_built_modules():
    from lora_diffusion.analysis import factor_spectra
    from lora_diffusion.methods.registry import apply_method
    from lora_diffusion.methods.trajectory import TrajectoryConfig
    from lora_diffusion.testing import tiny_backbone

    model = apply_method("trajectory", tiny_backbone("bert", seed=0),
                         TrajectoryConfig(ranks=[4, 4, 2], time_dim=8, cond_dim=8))
    bank = model.adapter.banks[0]
    D, d_in = bank.up.shape[1], bank.down.weight.shape[1]
    with torch.no_grad():
        bank.up.zero_()
        bank.down.weight.zero_()
        # module 0: W_A W_B = 3 e_0 f_0^T + 2 e_1 f_1^T (rank 2, s = 3, 2); module 1 left at zero
        bank.up[0, 0, 0], bank.up[0, 1, 1] = 3.0, 2.0
        bank.down.weight[0, 0], bank.down.weight[1, 1] = 1.0, 1.0
    out = factor_spectra(model)
    assert set(out) == {f"{p}/{i}" for p in ("early", "mid", "late") for i in (0, 1)}
    m0, m1 = out["early/0"], out["early/1"]
    assert m0["rank"] == 2 and m0["nominal_rank"] == 4
    assert m0["nuclear"] == pytest.approx(5.0) and m0["singular_values"][:3] == pytest.approx([3.0, 2.0, 0.0])
    assert m0["nuclear_w_a"] == pytest.approx(5.0) and m0["nuclear_w_b"] == pytest.approx(2.0)
    # p = (0.6, 0.4): r_eff = exp(-(0.6 ln 0.6 + 0.4 ln 0.4))
    assert m0["effective_rank"] == pytest.approx(math.exp(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4))))
    assert m1["rank"] == 0 and m1["nuclear"] == 0.0 and m1["effective_rank"] == 0.0
    assert m0["orth"] == m1["orth"] == 0.0  # module 1's W_A is zero
    with torch.no_grad():  # W_A^(1) = e_0 (one column): W_A^(0)T W_A^(1) has the single entry 3
        bank.up[1, 0, 0] = 1.0
    out = factor_spectra(model)
    assert out["early/0"]["orth"] == pytest.approx(9.0) and out["early/1"]["orth"] == pytest.approx(9.0)
    total = model.adapter.regularizers()["orth"].item()  # the training regulariser R_orth
    assert sum(m["orth"] for m in out.values()) == pytest.approx(total, rel=1e-5)
    assert out["late/0"]["nominal_rank"] == 2 and D > 4 and d_in > D
