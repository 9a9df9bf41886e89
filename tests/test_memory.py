"""Process memory figures: growing an allocation raises current and peak RSS."""

import torch

from lora_diffusion.utils.memory import peak_rss_mb, rss_mb


def test_rss_and_peak_grow_with_an_allocation():
    before, peak_before = rss_mb(), peak_rss_mb()
    block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
    assert rss_mb() >= before + 48
    assert peak_rss_mb() >= max(peak_before, rss_mb()) - 1
    del block
