"""Prefix prompt attention as a training option (``finetune --set prompt_attention=prefix``): the
training forward applies the mask generation uses (the prompt's states do not depend on the
response), every method trains under it, the adapter records it and generation uses it by default
(``--prompt-cache exact`` then equals no caching, token for token); bad values and unsupported
combinations are one line naming the field."""

import json
import shutil

import pytest
import torch

from lora_diffusion.api import load_pipeline
from lora_diffusion.cli import main
from lora_diffusion.config import ConfigError, from_dict
from lora_diffusion.data.encoding import ResponseFormat, pad_collate, tokenize_examples
from lora_diffusion.data.examples import Example
from lora_diffusion.finetune import FinetuneConfig, run_finetune, set_prompt_attention
from lora_diffusion.generation import GenerationOptions, denoising_accuracy, reverse_run
from lora_diffusion.hub import save_base
from lora_diffusion.methods import apply_method, method_config
from lora_diffusion.methods.persistence import (
    AdapterError,
    base_fingerprint,
    load_method,
    read_adapter_config,
    save_method,
)
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.prompt_cache import PromptCache, installed, prompt_layout
from lora_diffusion.testing import tiny_backbone

EXAMPLES = [("question: who wrote hamlet and when? answer:", "shakespeare"), ("q: capital of france?", "paris"),
            ("translate: good morning to you all", "guten morgen")]
TRAJ = {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}
METHODS = {  # name -> (method, options, arch)
    "lora-bert": ("lora", {"rank": 4, "alpha": 8.0}, "bert"),
    "lora-llama": ("lora", {"rank": 4, "alpha": 8.0}, "llama"),
    "full-llama": ("full", {}, "llama"),
    "full-bert": ("full", {}, "bert"),
    "adapter-bert": ("adapter", {"bottleneck": 8}, "bert"),
    "bitfit-bert": ("bitfit", {}, "bert"),
    "prefix-bert": ("prefix", {"num_prefix": 4}, "bert"),
    "trajectory-llama": ("trajectory", TRAJ, "llama"),
    "trajectory-deep-llama": ("trajectory", {**TRAJ, "deep_layers": [0, -1], "deep_rank": 2}, "llama"),
    "trajectory-mix-bert": ("trajectory", {**TRAJ, "read": "mix"}, "bert"),
    "composed-bert": ("trajectory-composed", {"adapter": TRAJ}, "bert"),
}


def _batch(tokenizer, responses=None):
    examples = [Example(p, r) for p, r in zip([p for p, _ in EXAMPLES], responses or [r for _, r in EXAMPLES])]
    enc = tokenize_examples(examples, tokenizer, ResponseFormat(6, 16))
    return pad_collate([enc.rows[i] for i in range(len(examples))])


def _model(key, attention="prefix"):
    name, options, arch = METHODS[key]
    backbone = tiny_backbone(arch, seed=0)
    set_prompt_attention(backbone, attention)
    torch.manual_seed(1)
    model = apply_method(name, backbone, method_config(name, options))
    with torch.no_grad():  # leave the identity start, so the method's perturbation acts
        for pname, p in model.named_parameters():
            if p.requires_grad and ("lora_B" in pname or ".up" in pname or "beta" in pname):
                p.normal_(0, 0.3)
    return model


def _prompt_states(model, batch):
    """The trunk's final states (B, L, D) seen during one objective call (the training forward)."""
    seen = []
    hook = model.backbone.trunk.register_forward_hook(
        lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out.last_hidden_state))
    try:
        DiffusionObjective(model.backbone.diffusion)(model, batch, torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert len(seen) == 1
    return seen[0].detach()


@pytest.mark.parametrize("key", list(METHODS))
def test_prompt_states_do_not_depend_on_the_response_in_training(key, tokenizer):
    model = _model(key).eval()  # no dropout: the two calls must differ only by the response tokens
    a, b = _batch(tokenizer), _batch(tokenizer, ["zebra", "tokyo", "hello there"])
    assert torch.equal(a["generate_mask"], b["generate_mask"]) and not torch.equal(a["input_ids"], b["input_ids"])
    ha, hb = _prompt_states(model, a), _prompt_states(model, b)
    prompt = (torch.cumsum(a["generate_mask"], 1) == 0) & a["attention_mask"].bool()  # before the first gen position
    torch.testing.assert_close(ha[prompt], hb[prompt], rtol=0, atol=1e-5)
    assert not torch.allclose(ha[a["generate_mask"].bool()], hb[a["generate_mask"].bool()])
    loss, _ = DiffusionObjective(model.backbone.diffusion)(model.train(), a, torch.Generator().manual_seed(0))
    loss.backward()  # trains under the mask
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_full_attention_lets_the_prompt_see_the_response_and_is_unchanged(arch, tokenizer):
    backbone = tiny_backbone(arch, seed=0)
    a, b = _batch(tokenizer), _batch(tokenizer, ["zebra", "tokyo", "hello there"])
    before = backbone.hidden_states(a["input_ids"], a["attention_mask"])
    set_prompt_attention(backbone, "full")
    assert torch.equal(backbone.hidden_states(a["input_ids"], a["attention_mask"]), before)  # the same code path
    first = a["attention_mask"].bool() & (torch.cumsum(a["generate_mask"], 1) == 0)
    assert not torch.allclose(before[first], backbone.hidden_states(b["input_ids"], b["attention_mask"])[first])


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_training_forward_is_the_function_generation_uses(arch, tokenizer):
    backbone = tiny_backbone(arch, seed=0)
    set_prompt_attention(backbone, "prefix")
    batch = _batch(tokenizer)
    ids = batch["input_ids"].masked_fill(batch["generate_mask"].bool(), backbone.mask_token_id)
    with prompt_layout(backbone, batch["generate_mask"], batch["attention_mask"]):
        train = backbone.hidden_states(ids, batch["attention_mask"])
    cache = PromptCache(backbone, batch["generate_mask"], batch["attention_mask"], "none", "prefix")
    with installed(backbone, cache):
        sample = backbone.hidden_states(ids, batch["attention_mask"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(train[real], sample[real], rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="prompt_attention") as err:  # a call that does not say where prompts end
        backbone.hidden_states(ids, batch["attention_mask"])
    assert "\n" not in str(err.value)
    assert 0.0 <= denoising_accuracy(backbone, _rows(tokenizer))["accuracy"] <= 1.0  # scoring announces it


def _rows(tokenizer):
    return tokenize_examples([Example(p, r) for p, r in EXAMPLES], tokenizer, ResponseFormat(6, 16))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA run trained with prefix prompt attention (run_finetune on a tiny JSONL, a few steps)."""
    tmp = tmp_path_factory.mktemp("prefix_run")
    save_base(tiny_backbone("bert", hidden=32), tmp / "base")
    words = ["the film", "a song", "this book", "that play", "our trip", "the meal"]
    rows = [{"prompt": f"{w} was", "response": ["good", "bad"][i % 2]} for i, w in enumerate(words * 4)]
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = from_dict(FinetuneConfig, {
        "base": str(tmp / "base"), "method": "lora", "method_options": {"rank": 4, "alpha": 8.0},
        "data_file": str(tmp / "train.jsonl"), "validation_rows": 4, "output_dir": str(tmp / "run"),
        "prompt_attention": "prefix", "sampling": {"prompt_cache": "exact", "num_steps": 4},
        "train": {"max_steps": 4, "lr": 1e-2, "warmup_steps": 0, "batch_size": 8, "micro_batch_size": 8,
                  "eval_every": 2, "save_every": 2}})
    result = run_finetune(cfg, progress=False)
    return tmp, result


def test_a_prefix_run_records_it_and_exact_caching_equals_no_caching(trained, tokenizer):
    tmp, result = trained
    assert result["config"]["prompt_attention"] == "prefix" and "validation" in result
    adapter = tmp / "run" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["prompt_attention"] == "prefix"
    assert read_adapter_config(adapter)["prompt_attention"] == "prefix"
    pipe = load_pipeline(adapter)
    assert pipe.model.backbone.prompt_attention == "prefix"
    data = tokenize_examples([Example(p, "") for p, _ in EXAMPLES], tokenizer, ResponseFormat(6, 16))
    runs = {mode: reverse_run(pipe.model, data, pipe.sampler(GenerationOptions(num_steps=6, prompt_cache=mode)))
            for mode in ("none", "exact")}
    assert runs["exact"].regions == runs["none"].regions
    explicit = reverse_run(pipe.model, data, pipe.sampler(GenerationOptions(num_steps=6, prompt_attention="prefix")))
    assert explicit.regions == runs["none"].regions  # the default is the recorded prefix attention


def test_generation_defaults_to_the_recorded_attention(trained, tmp_path, capsys):
    tmp, _ = trained
    adapter = tmp / "run" / "adapter"
    pipe = load_pipeline(adapter)
    assert pipe.sampler(GenerationOptions()).prompt_attention == "prefix"
    assert pipe.sampler(GenerationOptions(prompt_cache="exact")).prompt_attention == "prefix"
    assert pipe.sampler(GenerationOptions(prompt_attention="full")).prompt_attention == "full"  # the user's own
    common = ["--adapter", str(adapter), "--prompt", "the film was", "--steps", "3"]
    assert main(["generate", *common, "--prompt-cache", "exact"]) == 0
    # an adapter saved without the field (older versions) was trained with full attention
    old = tmp_path / "old"
    shutil.copytree(adapter, old)
    meta = json.loads((old / "adapter_config.json").read_text())
    assert meta.pop("prompt_attention") == "prefix"
    (old / "adapter_config.json").write_text(json.dumps(meta))
    pipe = load_pipeline(old)
    assert pipe.model.backbone.prompt_attention == "full"
    assert pipe.sampler(GenerationOptions()).prompt_attention == "full"
    with pytest.raises(ConfigError, match="prompt_cache") as err:
        pipe.sampler(GenerationOptions(prompt_cache="exact"))
    assert "\n" not in str(err.value) and "trained with full attention" in str(err.value)
    assert pipe.sampler(GenerationOptions(prompt_cache="exact", prompt_attention="prefix")).prompt_attention == "prefix"
    capsys.readouterr()
    common = ["--adapter", str(old), "--prompt", "the film was", "--steps", "3"]
    assert main(["generate", *common, "--prompt-cache", "exact"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--prompt-attention prefix" in err
    assert main(["generate", *common, "--prompt-cache", "exact", "--prompt-attention", "prefix"]) == 0
    # a bare base records nothing: exact implies prefix there, as before
    bare = load_pipeline(tmp / "base")
    assert bare.sampler(GenerationOptions(prompt_cache="exact")).prompt_attention == "prefix"
    assert bare.sampler(GenerationOptions()).prompt_attention == "full"


def test_evaluate_records_the_attention_it_used(trained, tmp_path):
    from lora_diffusion.evaluate import EvaluateConfig, run_evaluate

    tmp, _ = trained
    rows = [{"prompt": "the film was", "response": "good"}, {"prompt": "the meal was", "response": "bad"}]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_evaluate(from_dict(EvaluateConfig, {
        "adapter": str(tmp / "run" / "adapter"), "data_file": str(tmp_path / "eval.jsonl"),
        "output_dir": str(tmp_path / "out"), "sampling": {"num_steps": 3, "prompt_cache": "exact"}}))
    assert result["sampler"]["prompt_attention"] == "prefix"


def test_bad_values_and_unsupported_combinations_are_one_line(tmp_path, tokenizer):
    def one_line(err, *words):
        assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)

    with pytest.raises(ConfigError, match="^prompt_attention:") as err:
        FinetuneConfig(prompt_attention="causal")
    one_line(err, "causal", "prefix")
    with pytest.raises(ConfigError, match="^prompt_attention:") as err:
        FinetuneConfig(method="trajectory-composed", tasks=["sst2", "trec"], prompt_attention="causal")
    one_line(err, "causal")
    with pytest.raises(ConfigError, match="^prompt_attention:") as err:
        set_prompt_attention(tiny_backbone("distilbert"), "prefix")
    one_line(err, "distilbert", "4D")
    with pytest.raises(ConfigError, match="^prompt_attention:") as err:
        GenerationOptions(prompt_attention="sideways")
    one_line(err, "sideways")
    with pytest.raises(ConfigError, match="^prompt_cache:"):
        GenerationOptions(prompt_cache="exact", prompt_attention="full")
    # finetune refuses before training: an unsupported family, or exact scoring of a full-attention run
    save_base(tiny_backbone("distilbert"), tmp_path / "distil")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n"
                                                  for p, r in EXAMPLES * 4))
    common = ["finetune", "--data-file", str(tmp_path / "train.jsonl"), "--set", "method=lora",
              "--set", "train.max_steps=1", "--output-dir"]
    assert main([*common, str(tmp_path / "a"), "--base", str(tmp_path / "distil"),
                 "--set", "prompt_attention=prefix"]) == 2
    assert not (tmp_path / "a" / "adapter").exists()
    save_base(tiny_backbone("bert"), tmp_path / "bert")
    assert main([*common, str(tmp_path / "b"), "--base", str(tmp_path / "bert"),
                 "--set", "sampling.prompt_cache=exact"]) == 2
    assert not (tmp_path / "b" / "adapter").exists()
    # an adapter whose record was edited to a bad value, or to prefix on a family that cannot take it
    distil = tiny_backbone("distilbert")
    fingerprint = base_fingerprint(distil)
    save_method(apply_method("lora", distil, method_config("lora", {"rank": 2})), tmp_path / "d", fingerprint)
    meta = json.loads((tmp_path / "d" / "adapter_config.json").read_text())
    for value, words in (("sideways", ("sideways",)), ("prefix", ("distilbert",))):
        (tmp_path / "d" / "adapter_config.json").write_text(json.dumps({**meta, "prompt_attention": value}))
        with pytest.raises(AdapterError, match="field 'prompt_attention'") as err:
            load_method(tmp_path / "d", tiny_backbone("distilbert"))
        one_line(err, *words)


def test_forgetting_and_rank_analysis_run_on_a_prefix_trained_model(trained, tmp_path):
    """The NELBO / forgetting path and the perturbation analyses announce each row's prompt."""
    from lora_diffusion.cli import main

    tmp, _ = trained
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n".join(f"line {i} of some plain text for the bound" for i in range(40)) + "\n")
    assert main(["forgetting", "--adapter", str(tmp / "run" / "adapter"), "--corpus", str(corpus), "--split", "all",
                 "--seq-len", "16", "--max-chunks", "4", "--output-dir", str(tmp_path / "f")]) == 0
    assert json.loads((tmp_path / "f" / "forgetting.json").read_text())
