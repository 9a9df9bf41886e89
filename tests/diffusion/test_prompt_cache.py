"""Prompt caching (``lora_diffusion.prompt_cache``): exact caching under prefix attention gives
token-identical samples to no caching (plain base, trajectory adapters, LoRA; every sampler),
with the method's perturbation at every call and the passes counted; approximate caching
fills the response region only, never leaves [MASK], and equals no caching where the prompt
cannot see the response; unsupported combinations are refused in one line; the CLI flags."""

import pytest
import torch

from lora_diffusion.cli import main
from lora_diffusion.cli.common import add_sampling, sampling_overrides
from lora_diffusion.cli.generate import GenerateConfig
from lora_diffusion.config import ConfigError, DiffusionConfig, load_config
from lora_diffusion.data.encoding import ResponseFormat, pad_collate, tokenize_examples
from lora_diffusion.data.examples import Example
from lora_diffusion.diffusion.sampler import SamplerConfig
from lora_diffusion.generation import GenerationOptions, generate
from lora_diffusion.hub import save_base
from lora_diffusion.methods import apply_method, method_config
from lora_diffusion.prompt_cache import (
    A2D_TYPES,
    MASKED_TYPES,
    PromptCache,
    attention_bias,
    installed,
    prompt_lengths,
)
from lora_diffusion.testing import packaged_tokenizer, tiny_backbone

SAMPLERS = {
    "ancestral": {"strategy": "ancestral", "greedy": False},  # event-driven: calls on row subsets
    "low_confidence_blocks": {"strategy": "low_confidence", "greedy": True, "block_length": 3},
    "threshold_blocks": {"parallel": "threshold", "threshold": 0.3, "block_length": 4, "greedy": False},
}
EXAMPLES = [("question: who wrote hamlet and when was it first performed? answer:", "shakespeare"),
            ("q: capital of france?", "paris"), ("translate: good morning to you all", "guten morgen")]


@pytest.fixture(scope="module")
def batch(tokenizer):
    enc = tokenize_examples([Example(p, r) for p, r in EXAMPLES], tokenizer, ResponseFormat(8, 24))
    return pad_collate([enc.rows[i] for i in range(len(EXAMPLES))])  # ragged prompts: 16, 8 and 9 tokens


def _generate(model, batch, mode, attention, sampler, stats=None, seed=3):
    cfg = SamplerConfig(num_steps=12, prompt_cache=mode, prompt_attention=attention, **SAMPLERS[sampler])
    return generate(model, batch, cfg, torch.Generator().manual_seed(seed), cache_stats=stats)


def _method(name, arch="llama"):
    base = tiny_backbone(arch, seed=0)
    torch.manual_seed(1)
    options = {"lora": {"rank": 4, "alpha": 8.0}, "trajectory": {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}}
    model = apply_method(name, base, method_config(name, options[name]))
    with torch.no_grad():  # leave the identity start: the perturbation must change the samples
        for pname, p in model.named_parameters():
            if p.requires_grad and ("lora_B" in pname or ".up" in pname or "beta" in pname):
                p.normal_(0, 0.5)
    return model.eval()


def test_prefix_mask_hides_the_response_from_the_prompt_only():
    attn = torch.tensor([[1, 1, 1, 1, 1, 0]])
    keep = attention_bias(attn, torch.tensor([2]), torch.float32)[0, 0] == 0
    assert keep[:2].tolist() == [[True, True, False, False, False, False]] * 2  # prompt: prompt keys only
    assert keep[2:].tolist() == [[True] * 5 + [False]] * 4  # the rest: every real key
    assert prompt_lengths(torch.tensor([[0, 0, 1, 1, 0], [0, 0, 0, 0, 0]]).bool(),
                          torch.tensor([[1] * 5, [1, 1, 1, 0, 0]])).tolist() == [2, 3]


def _any_backbone(arch):
    if arch not in ("mistral", "qwen3"):
        return tiny_backbone(arch, seed=0)
    import transformers as tf

    from lora_diffusion.backbone import DiffusionLM

    tok = packaged_tokenizer()
    cls = tf.MistralConfig if arch == "mistral" else tf.Qwen3Config
    torch.manual_seed(0)
    cfg = cls(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
              intermediate_size=64, max_position_embeddings=256, pad_token_id=0, head_dim=16)
    return DiffusionLM(tf.AutoModelForCausalLM.from_config(cfg), tok, family="a2d").eval()


@pytest.mark.parametrize("arch", MASKED_TYPES + A2D_TYPES)
def test_cached_pass_reproduces_the_full_pass_on_every_supported_type(arch, batch):
    """Hidden states at every real position: a cached pass after the response changed equals the
    uncached pass with prefix attention; under full attention the stale prompt makes it differ."""
    model = _any_backbone(arch)
    ids, attn, gen = batch["input_ids"], batch["attention_mask"], batch["generate_mask"].bool()
    later = torch.where(gen, torch.randint(1000, 2000, ids.shape, generator=torch.Generator().manual_seed(1)), ids)
    real = attn.bool()
    with torch.no_grad():
        for mode, attention, same in (("exact", "prefix", True), ("approximate", "full", False)):
            cache = PromptCache(model, gen, attn, mode, attention)
            with installed(model, cache):
                model.hidden_states(ids, attn)  # full pass: fills the cache
                cached = model.hidden_states(later, attn)  # cached pass
            with installed(model, PromptCache(model, gen, attn, "none", attention)):
                ref = model.hidden_states(later, attn)
            assert cache.stats["cached_passes"] == 1 and cache.stats["cached_positions"] < later.numel()
            assert torch.allclose(cached[real], ref[real], atol=1e-5) == same
    assert torch.allclose(model.hidden_states(later, attn), ref, atol=1e-5)  # uninstalled: full attention again


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_exact_cache_is_token_identical_to_no_cache(arch, sampler, batch):
    model = tiny_backbone(arch, seed=0)
    calls = []
    hook = model.trunk.register_forward_hook(lambda *_: calls.append(1))
    stats_none, stats_exact = {}, {}
    ref = _generate(model, batch, "none", "prefix", sampler, stats_none)
    n_ref, calls[:] = len(calls), []
    out = _generate(model, batch, "exact", "prefix", sampler, stats_exact)
    hook.remove()
    assert torch.equal(out, ref)
    assert stats_exact["cached_passes"] > 0 and stats_none["cached_passes"] == 0
    # every model call is one trunk call, counted as full or cached; the same calls in both runs
    assert len(calls) == n_ref == stats_none["full_passes"] == stats_exact["full_passes"] + stats_exact["cached_passes"]
    assert stats_exact["full_positions"] + stats_exact["cached_positions"] < stats_none["full_positions"]
    assert stats_exact["full_passes"] == 1 and stats_exact["full_rows"] == len(EXAMPLES)  # one fill, every row


@pytest.mark.parametrize("name", ["trajectory", "lora"])
@pytest.mark.parametrize("sampler", ["ancestral", "threshold_blocks"])
def test_exact_cache_keeps_the_method_at_every_call(name, sampler, batch):
    model = _method(name)
    perturbed = []
    target = model.adapter if name == "trajectory" else next(
        m for n, m in model.backbone.mlm.named_modules() if n.endswith("lora_B.default"))
    hook = target.register_forward_hook(lambda *_: perturbed.append(1))
    stats = {}
    ref = _generate(model, batch, "none", "prefix", sampler)
    n_ref, perturbed[:] = len(perturbed), []
    out = _generate(model, batch, "exact", "prefix", sampler, stats)
    hook.remove()
    assert torch.equal(out, ref) and stats["cached_passes"] > 0
    assert len(perturbed) == n_ref == stats["full_passes"] + stats["cached_passes"]  # the hook ran at every call
    plain = _generate(tiny_backbone("llama", seed=0), batch, "exact", "prefix", sampler)
    assert not torch.equal(plain, out)  # the method changes the samples, with the cache on


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_approximate_fills_the_response_region_only(sampler, batch, tokenizer):
    model = tiny_backbone("bert", seed=0)
    stats = {}
    out = _generate(model, batch, "approximate", "full", sampler, stats)
    gen = batch["generate_mask"].bool()
    assert torch.equal(out[~gen], batch["input_ids"][~gen])  # prompt, separators, padding untouched
    assert not (out[gen] == model.mask_token_id).any()  # no [MASK] left in the budget
    assert stats["cached_passes"] > 0
    blocks = -(-8 // SAMPLERS[sampler].get("block_length", 8))
    assert stats["full_passes"] == blocks  # one refresh of the whole batch per block


def test_approximate_equals_no_cache_when_the_prompt_cannot_see_the_response(batch):
    model = tiny_backbone("llama", seed=0)
    for sampler in SAMPLERS:
        assert torch.equal(_generate(model, batch, "approximate", "prefix", sampler),
                           _generate(model, batch, "none", "prefix", sampler))


def test_unsupported_combinations_are_refused_in_one_line(batch, tmp_path):
    def refused(model, mode="approximate", attention="full"):
        with pytest.raises(ConfigError) as err:
            _generate(model, batch, mode, attention, "threshold_blocks")
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "distilbert" in refused(tiny_backbone("distilbert"))
    base = tiny_backbone("bert")
    prefix = apply_method("prefix", base, method_config("prefix", {"num_prefix": 2}))
    assert "prefix method" in refused(prefix)
    _generate(prefix, batch, "none", "prefix", "threshold_blocks")  # its wrapper extends the 4D mask
    deep = apply_method("trajectory", tiny_backbone("llama"), method_config("trajectory", {
        "ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12, "deep_layers": [-1], "deep_rank": 2}))
    assert "deep trajectory" in refused(deep)
    _generate(deep, batch, "none", "prefix", "threshold_blocks")  # prefix attention alone is fine
    timed = tiny_backbone("llama", diffusion=DiffusionConfig(time_conditioning=True))
    assert "time conditioning" in refused(timed, "exact", "prefix")
    _generate(timed, batch, "approximate", "full", "threshold_blocks")  # approximate is allowed there
    with pytest.raises(ValueError, match="prompt_attention"):
        SamplerConfig(prompt_cache="exact")
    with pytest.raises(ConfigError, match="prompt_cache"):
        GenerationOptions(prompt_cache="exact", prompt_attention="full")
    with pytest.raises(ConfigError, match="prompt_cache"):
        GenerationOptions(prompt_cache="sometimes")


def test_cli_flags_round_trip(tmp_path, capsys):
    import argparse

    p = argparse.ArgumentParser()
    add_sampling(p)
    over = sampling_overrides(p.parse_args(["--prompt-cache", "exact"]))
    assert over == {"sampling.prompt_cache": "exact"}  # the attention is the model's own (a bare base: prefix)
    cfg = load_config(GenerateConfig, None, {"base": "b", "prompts": ["x"], **over})
    sampler = cfg.sampling.sampler(50)
    assert (sampler.prompt_cache, sampler.prompt_attention) == ("exact", "prefix")
    over = sampling_overrides(p.parse_args(["--prompt-cache", "approximate", "--block-length", "4"]))
    assert over == {"sampling.prompt_cache": "approximate", "sampling.block_length": 4}
    save_base(tiny_backbone("bert"), tmp_path / "bert")
    save_base(tiny_backbone("distilbert"), tmp_path / "distilbert")
    common = ["--prompt", "q: capital of france? answer:", "--response-length", "4", "--steps", "4"]
    assert main(["generate", "--base", str(tmp_path / "bert"), *common, "--prompt-cache", "exact"]) == 0
    capsys.readouterr()
    assert main(["generate", "--base", str(tmp_path / "distilbert"), *common, "--prompt-cache", "approximate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "prompt_cache" in err and "distilbert" in err
    assert main(["generate", "--base", str(tmp_path / "bert"), *common, "--prompt-cache", "exact",
                 "--prompt-attention", "full"]) == 2
    assert "prompt_attention=prefix" in capsys.readouterr().err


def test_a_method_reading_every_layer_gets_full_passes_and_the_same_samples(batch):
    model = apply_method("trajectory", tiny_backbone("llama", seed=0), method_config("trajectory", {
        "ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12, "read": "mix"})).eval()
    stats = {}
    out = _generate(model, batch, "exact", "prefix", "threshold_blocks", stats)
    assert torch.equal(out, _generate(model, batch, "none", "prefix", "threshold_blocks"))
    assert stats["cached_passes"] == 0 and stats["full_passes"] > 1


def test_the_cache_argument_is_found_under_either_transformers_name():
    """transformers 5.24 renamed ``past_key_values`` to ``cache``: both are found, a trunk with neither is None."""
    from lora_diffusion.prompt_cache import cache_argument

    class New(torch.nn.Module):
        def forward(self, input_ids, cache=None, **kwargs): ...

    class Old(torch.nn.Module):
        def forward(self, input_ids, past_key_values=None, **kwargs): ...

    class Neither(torch.nn.Module):
        def forward(self, input_ids, **kwargs): ...

    assert [cache_argument(m()) for m in (New, Old, Neither)] == ["cache", "past_key_values", None]
