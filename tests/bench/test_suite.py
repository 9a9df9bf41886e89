"""The benchmark suite end to end on a tiny base (figures are not checked, only their sanity)."""

import json

import pytest

from lora_diffusion.cli import main
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone

TINY = ["train_batch=2", "train_length=16", "train_rounds=1", "memory_steps=1", "batch=2", "length=16",
        "prompt=4", "num_steps=6", "tasks=2", "method_options.trajectory.ranks=[8,4,2]",
        "method_options.lora.rank=4", "decoding_batch=3", "decoding_settings=[threshold-0.9,fixed-4]",
        "latency_rounds=3"]


def test_bench_cli_writes_every_figure(tmp_path, capsys):
    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    args = ["bench", "--base", str(tmp_path / "base"), "--methods", "full,trajectory", "--rounds", "1",
            "--output-dir", str(tmp_path / "out")]
    for pair in TINY:
        args += ["--set", pair]
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(result["training"]) == {"full", "trajectory"}
    mem = result["memory"]["full"]  # a tiny model may not lift the peak above the import-time RSS
    assert mem["peak_rss_mb"] >= mem["rss_loaded_mb"] > 0 and mem["training_memory_mb"] >= 0
    inf = result["inference"]
    assert set(inf["latency"]) >= {"base", "trajectory", "lora", "lora-merged", "adapter", "prefix", "bitfit"}
    assert inf["response_tokens"] == 16 - 4 - 1
    passes = inf["trunk_passes"]
    assert passes["event-driven"]["rows_per_sample"] <= inf["response_tokens"]
    assert passes["step-by-step"]["rows_per_sample"] == 6  # every one of the T steps
    dec = result["decoding"]
    assert set(dec["settings"]) == {"exact", "threshold-0.9", "fixed-4"} and dec["response_tokens"] == 11
    assert dec["settings"]["fixed-4"]["passes_per_sample"] == 3  # ceil(11 / 4), every row in every call
    assert dec["settings"]["fixed-4"]["calls"] == 3 and "latency" not in dec  # the latency part's
    lat = result["latency"]
    assert set(lat["settings"]) == {"exact", "fixed-4"} and lat["rounds"] == 3 and lat["batch"] == 2
    fixed = lat["settings"]["fixed-4"]
    assert fixed["passes_per_sample"] == {"base": 3, "trajectory": 3}  # the same passes for both
    assert all(len(t) == 3 for t in fixed["times"].values()) and fixed["noise"]["ratio"] > 0
    assert fixed["trajectory_vs_base"]["ratio"] == pytest.approx(
        sorted(fixed["times"]["trajectory"])[1] / sorted(fixed["times"]["base"])[1])  # ratio of the medians
    assert len(result["targets"]) == 11 and "git_commit" in result
    text = (tmp_path / "out" / "bench.md").read_text()
    assert "## Targets" in text and "trajectory train step / full FT" in text
    assert "## Parallel decoding (batch 3," in text
    assert "## Latency: trajectory vs frozen base (batch 2," in text and "noise floor at fixed-4" in text
    printed = capsys.readouterr().out
    assert printed.count("(bound ") == 11 and "bench.md" in printed


def test_bench_reuses_an_earlier_result_without_the_decoding_part(tmp_path):
    from lora_diffusion.bench import BenchConfig, run_bench

    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    out = tmp_path / "out"
    out.mkdir()
    (out / "bench.json").write_text(json.dumps({"training": {}, "memory": {}, "git_commit": "old"}))
    small = {"base": str(tmp_path / "base"), "batch": 2, "length": 16, "prompt": 4, "num_steps": 6, "tasks": 2,
             "rounds": 1, "decoding_batch": 2, "decoding_settings": ["fixed-4"], "output_dir": str(out),
             "method_options": {"trajectory": {"ranks": [8, 4, 2]}, "lora": {"rank": 4}}}
    first = run_bench(BenchConfig(**small, parts=["inference"]))  # an earlier bench.json without decoding
    assert "decoding" not in first and first["parts_reused"] == {"training": "old", "memory": "old"}
    both = run_bench(BenchConfig(**small, parts=["decoding"]))
    assert set(both["parts_reused"]) == {"training", "memory", "inference"}
    assert len(both["targets"]) == len(first["targets"])  # throughput only: no target of its own
    assert both["decoding"]["settings"]["fixed-4"]["passes_per_sample"] == 3  # ceil(11 / 4)
    third = run_bench(BenchConfig(**small, parts=["latency"], latency_rounds=1, latency_settings=["fixed-4"]))
    assert third["decoding"] == both["decoding"] and len(third["targets"]) == len(both["targets"]) + 2
    legacy = {**third, "latency": None, "decoding": {**third["decoding"], "latency": {
        "setting": "fixed-4", "trajectory_vs_base": {"ratio": 1.01}, "noise": {"ratio": 0.99}}}}
    from lora_diffusion.bench.report import targets

    assert [t["value"] for t in targets(legacy) if t.get("part") == "decoding"] == [1.01, pytest.approx(1.0)]
    assert set(third["parts_reused"]) == {"training", "memory", "inference", "decoding"}
    assert third["parts_reused"]["training"] == "old"  # the commit that measured it, carried over
    assert third["parts_reused"]["decoding"] == both["git_commit"]


def test_bench_rejects_unknown_method(tmp_path, capsys):
    assert main(["bench", "--methods", "full,dora", "--output-dir", str(tmp_path)]) == 2
    assert "methods: unknown ['dora']" in capsys.readouterr().err


def test_trajectory_presets_are_benchmarked_by_name():
    from lora_diffusion.bench.suite import BenchConfig
    from lora_diffusion.bench.workloads import method_model
    from lora_diffusion.config import ConfigError
    from lora_diffusion.testing import tiny_backbone

    BenchConfig(methods=["full", "trajectory", "trajectory@lean", "trajectory@deep"])
    with pytest.raises(ConfigError, match="trajectory@bogus"):
        BenchConfig(methods=["trajectory@bogus"])
    model = method_model(tiny_backbone("bert", layers=4), "trajectory@deep",
                         {"trajectory": {"ranks": [8, 4, 2], "deep_rank": 4}})
    assert model.cfg.preset == "deep" and model.cfg.ranks == [8, 4, 2] and model.adapter.deep is not None


def test_each_measurement_is_one_call_after_one_warm_up_call_each():
    from lora_diffusion.bench.decoding import timed_rounds
    from lora_diffusion.bench.harness import interleaved, time_once

    calls = []
    assert time_once(lambda: calls.append(1)) >= 0 and len(calls) == 1
    seen = {"a": 0, "b": 0}
    fns = {k: (lambda k=k: seen.__setitem__(k, seen[k] + 1)) for k in seen}
    assert interleaved(fns, rounds=3)["a"]["runs"] == 3 and seen == {"a": 4, "b": 4}
    assert len(timed_rounds(fns, rounds=2)["b"]["times"]) == 2 and seen == {"a": 7, "b": 7}


def test_a_bf16_method_trains_under_autocast_with_fp32_weights():
    """``full+bf16``: the same method and step, the forward in bfloat16 (the trainer's
    ``mixed_precision: bf16``), the weights and the loss's gradient step in fp32."""
    import torch

    from lora_diffusion.bench.suite import BenchConfig
    from lora_diffusion.bench.workloads import split_precision, train_batch, train_step_fn
    from lora_diffusion.config import ConfigError
    from lora_diffusion.testing import tiny_backbone

    BenchConfig(methods=["full", "full+bf16", "trajectory@mix+bf16"])
    with pytest.raises(ConfigError, match=r"unknown \['dora\+bf16'\]"):
        BenchConfig(methods=["dora+bf16"])
    assert split_precision("trajectory@mix+bf16") == ("trajectory@mix", "bf16") and split_precision("lora")[1] == "fp32"
    backbone = tiny_backbone("bert", hidden=32)
    batch = train_batch(backbone, 2, 16)
    seen = {}
    for name in ("full", "full+bf16"):
        step = train_step_fn(backbone, name, batch)
        linear = next(m for m in step.model.modules() if isinstance(m, torch.nn.Linear))  # its output's dtype
        hook = linear.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.dtype))
        before = {n: p.detach().clone() for n, p in step.model.named_parameters() if p.requires_grad}
        assert torch.isfinite(torch.tensor(step()))
        hook.remove()
        after = dict(step.model.named_parameters())
        assert all(after[n].dtype == torch.float32 for n in before)
        assert any(not torch.equal(before[n], after[n]) for n in before)  # it trained
    assert seen == {"full": torch.float32, "full+bf16": torch.bfloat16}
