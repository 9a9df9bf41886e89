"""Targets and markdown of a benchmark result, from a fixture with hand-computed ratios."""

from lora_diffusion.bench.report import markdown, targets


def _result():
    lat = {name: {"median_s": s, "per_sample_s": s / 8} for name, s in
           {"base": 2.0, "trajectory": 2.02, "lora": 2.6, "lora-merged": 2.1, "adapter": 2.2, "prefix": 2.1,
            "bitfit": 2.0, "base (step-by-step sampler)": 3.0}.items()}
    return {
        "config": {"base": "b", "tasks": 8, "train_batch": 16, "train_length": 128, "batch": 8, "length": 128,
                   "prompt": 32, "num_steps": 100},
        "hardware": {"platform": "p", "cpus": 2, "torch_threads": 2, "cuda": False},
        "training": {"full": {"median_s": 1.0, "trainable_parameters": 100, "bytes_on_disk": 400},
                     "trajectory": {"median_s": 0.3, "trainable_parameters": 10, "bytes_on_disk": 4_120_000}},
        "memory": {"full": {"training_memory_mb": 800.0, "peak_rss_mb": 1200.0},
                   "trajectory": {"training_memory_mb": 300.0, "peak_rss_mb": 700.0}},
        "inference": {"latency": lat, "response_tokens": 95,
                      "trunk_passes": {"event-driven": {"calls": 98, "rows_per_sample": 61.5},
                                       "step-by-step": {"calls": 100, "rows_per_sample": 100.0}},
                      "multitask": {"times": {"one adapter": {"median_s": 2.0}, "8 adapters": {"median_s": 2.3}},
                                    "ratio": 1.15}},
    }


def test_targets_by_hand():
    got = {t["target"]: (round(t["value"], 4), t["met"]) for t in targets(_result())}
    assert got["trajectory train step / full FT"] == (0.3, True)
    assert got["trajectory peak training memory / full FT"] == (0.375, False)  # 300 / 800 > 0.35
    assert got["trajectory generation latency / frozen base"] == (1.01, True)
    assert got["merged weight LoRA generation latency / frozen base"] == (1.05, False)
    assert got["trunk passes per sample (bound: 95 response tokens)"] == (61.5, True)
    assert got["mixed batch of 8 adapters / one adapter"] == (1.15, False)
    assert got["trajectory adapter file (MB)"] == (4.12, True)


def test_markdown_lists_every_target_and_configuration():
    result = _result()
    result["targets"] = targets(result)
    text = markdown(result)
    assert text.count("| **no** |") == 3
    assert "| trajectory | 10 | 0.300 | 0.30x | 700 | 300 | 0.38x | 4,120,000 |" in text
    assert "| base (step-by-step sampler) | 375.0 | 1.500x |" in text
    assert "| event-driven | 98 | 61.5 |" in text


def test_a_method_without_memory_figures_shows_dashes_not_zeros():
    result = _result()
    result["training"]["trajectory@mix"] = {"median_s": 0.29, "trainable_parameters": 5, "bytes_on_disk": 20}
    result["targets"] = targets(result)
    assert "| trajectory@mix | 5 | 0.290 | 0.29x | - | - | - | 20 |" in markdown(result)


def test_a_bf16_step_is_read_against_full_bf16():
    """trajectory+bf16 0.2 s against full+bf16 0.5 s: 0.40x (against fp32 full it would read 0.20x)."""
    result = _result()
    result["training"]["full+bf16"] = {"median_s": 0.5, "trainable_parameters": 100, "bytes_on_disk": 400}
    result["training"]["trajectory+bf16"] = {"median_s": 0.2, "trainable_parameters": 10, "bytes_on_disk": 400}
    got = {t["target"]: round(t["value"], 4) for t in targets(result)}
    assert got["trajectory+bf16 train step / full+bf16"] == 0.4 and got["trajectory train step / full FT"] == 0.3
    result["targets"] = targets(result)
    text = markdown(result)
    assert "| trajectory+bf16 | 10 | 0.200 | 0.40x |" in text and "| full+bf16 | 100 | 0.500 | 1.00x |" in text
    del result["training"]["full+bf16"]  # no bf16 reference timed: against fp32 full, as before
    assert {t["target"] for t in targets(result)} >= {"trajectory+bf16 train step / full FT"}
