"""The trainer's optimiser: AdamW, fused wherever torch's kernel applies, the same update as the
per-tensor loop up to rounding."""

import torch

from lora_diffusion.training.schedule import make_optimizer


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in ((300, 16), (16, 16), (16,))]


def test_fused_where_it_applies():
    assert make_optimizer(_params(), 1e-3, 0.01).defaults["fused"] is True
    assert not make_optimizer(_params(), 1e-3, 0.01, sharded=True).defaults["fused"]  # FSDP / DeepSpeed tensors


def test_same_update_as_the_loop():
    """50 steps on the same gradients: fused and per-tensor AdamW agree to float32 rounding,
    while the parameters move by up to ~0.05."""
    g = torch.Generator().manual_seed(1)
    grads = [[torch.randn(p.shape, generator=g) for p in _params()] for _ in range(50)]
    runs = []
    for fused in (True, False):
        ps = _params()
        opt = make_optimizer(ps, 1e-3, 0.01) if fused else torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01,
                                                                              foreach=False)
        for gs in grads:
            for p, grad in zip(ps, gs):
                p.grad = grad.clone()
            opt.step()
        runs.append(ps)
    moved = max(float((p - q).abs().max()) for p, q in zip(runs[0], _params()))
    gap = max(float((p - q).abs().max()) for p, q in zip(*runs))
    assert moved > 0.01 and gap < 1e-5
