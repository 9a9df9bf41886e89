"""``precision=bf16`` generation (``generation.generate`` under bfloat16 autocast): every model
call of the reverse run is made under autocast and only then; the output keeps every invariant of
fp32 generation (no [MASK] left, prompt and positions outside the budget untouched, seeded); the
option validates and reaches the sampler from the CLI, the config and the bench's settings."""

import argparse

import pytest
import torch

from lora_diffusion.config import ConfigError
from lora_diffusion.diffusion.sampler import SamplerConfig

SMALL = {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 16}


def _batch(B=3, prompt=4, resp=8):
    x = torch.randint(1000, 2000, (B, prompt + resp), generator=torch.Generator().manual_seed(0))
    gen = torch.zeros_like(x, dtype=torch.bool)
    gen[:, prompt:] = True
    gen[1, -3:] = False  # a shorter budget on one row: its last 3 positions are not generated
    return {"input_ids": x, "attention_mask": torch.ones_like(x), "generate_mask": gen, "instruction_mask": ~gen}


@pytest.mark.parametrize("options", [{}, {"parallel": "fixed", "tokens_per_call": 3},
                                     {"parallel": "threshold", "threshold": 0.5, "block_length": 4}])
@pytest.mark.parametrize("method", ["trajectory", "lora"])
def test_bf16_generation_runs_every_call_under_autocast_and_keeps_the_invariants(method, options):
    from lora_diffusion.finetune import build_method_model
    from lora_diffusion.generation import generate
    from lora_diffusion.testing import tiny_backbone

    model, _ = build_method_model(tiny_backbone("bert", seed=0), method, SMALL if method == "trajectory" else {"rank": 4},
                                  seed=0)
    model.eval()
    batch = _batch()
    gen = batch["generate_mask"]
    dtypes = {"fp32": [], "bf16": []}
    runs = {}
    for precision in ("fp32", "bf16"):
        linear = next(m for m in model.backbone.trunk.modules() if isinstance(m, torch.nn.Linear))
        hook = linear.register_forward_hook(  # a matrix product inside the trunk, at every call
            lambda _m, _i, out, p=precision: dtypes[p].append((torch.is_autocast_enabled("cpu"), out.dtype)))
        try:
            cfg = SamplerConfig(num_steps=8, greedy=True, precision=precision, **options)
            runs[precision] = generate(model, batch, cfg, torch.Generator().manual_seed(1))
            again = generate(model, batch, cfg, torch.Generator().manual_seed(1))
        finally:
            hook.remove()
        out = runs[precision]
        assert torch.equal(out, again)  # seeded
        assert not (out[gen] == model.backbone.mask_token_id).any()
        assert torch.equal(out[~gen], batch["input_ids"][~gen])  # prompt and beyond-budget kept
    assert dtypes["fp32"] and all(d == (False, torch.float32) for d in dtypes["fp32"])
    assert dtypes["bf16"] and all(d == (True, torch.bfloat16) for d in dtypes["bf16"])
    assert len(dtypes["bf16"]) == len(dtypes["fp32"]) or options  # exact sampler: same reveal events
    assert not torch.is_autocast_enabled("cpu")  # left as found
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights untouched


def test_precision_validates_and_reaches_the_sampler_from_cli_config_and_bench():
    from lora_diffusion.bench.decoding import parse_setting, setting_options
    from lora_diffusion.cli.common import add_sampling, sampling_overrides
    from lora_diffusion.cli.generate import GenerateConfig
    from lora_diffusion.config import load_config
    from lora_diffusion.generation import GenerationOptions

    assert GenerationOptions().sampler(10).precision == "fp32"
    assert GenerationOptions(precision="bf16").sampler(10).precision == "bf16"
    with pytest.raises(ConfigError, match="precision") as err:
        GenerationOptions(precision="fp16")
    assert err.value.field == "precision"
    with pytest.raises(ValueError, match="precision"):
        SamplerConfig(precision="int8")
    p = argparse.ArgumentParser()
    add_sampling(p)
    assert sampling_overrides(p.parse_args(["--precision", "bf16"])) == {"sampling.precision": "bf16"}
    with pytest.raises(SystemExit):
        p.parse_args(["--precision", "fp16"])
    base = {"base": "b", "prompts": ["p"]}
    assert load_config(GenerateConfig, None, {**base, "sampling.precision": "bf16"}).sampling.precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        load_config(GenerateConfig, None, {**base, "sampling.precision": "half"})
    assert parse_setting("fixed-4+bf16", 32) == {**parse_setting("fixed-4", 32), "precision": "bf16"}
    assert setting_options("exact+bf16", 32).sampler(100).precision == "bf16"
