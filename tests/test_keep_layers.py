"""Smaller bases cut from a bigger one (``pretrain keep_layers``, the scaling study of #14)."""

import pytest
import torch

from lora_diffusion.backbone import keep_first_layers, layer_stack
from lora_diffusion.hub import load_base, save_base
from lora_diffusion.testing import tiny_backbone


@pytest.mark.parametrize("arch", ["bert", "llama", "distilbert"])
def test_first_layers_kept_saved_and_reloaded(arch, tmp_path):
    base = tiny_backbone(arch, seed=0, layers=4)
    ids = torch.randint(1000, 2000, (2, 7))
    attn = torch.ones_like(ids)
    stack = layer_stack(base.trunk)
    first = [layer.state_dict() for layer in stack[:2]]
    keep_first_layers(base, 2)
    assert len(layer_stack(base.trunk)) == 2
    assert all(all(torch.equal(a[k], layer.state_dict()[k]) for k in a) for a, layer in zip(first, layer_stack(base.trunk)))
    save_base(base, tmp_path / "small")
    again = load_base(str(tmp_path / "small"))
    assert len(layer_stack(again.trunk)) == 2
    with torch.no_grad():
        torch.testing.assert_close(again.hidden_states(ids, attn), base.hidden_states(ids, attn))
    with pytest.raises(ValueError, match="keep 1..2"):
        keep_first_layers(again, 3)


def test_pretrain_refuses_a_negative_count():
    from lora_diffusion.config import ConfigError, PretrainConfig

    with pytest.raises(ConfigError, match="keep_layers"):
        PretrainConfig(keep_layers=-1)
