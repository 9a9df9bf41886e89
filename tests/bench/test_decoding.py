"""The decoding study (``bench.decoding``) on a tiny base with an identity trajectory adapter and a
users' JSONL task: its bookkeeping (passes, agreement, [MASK]), its files, its targets from
hand-set numbers, the aggregate report; and the bench's ``decoding`` targets and markdown."""

import json
import math

import pytest

from lora_diffusion.bench.decoding import default_settings, main, method_label, setting_options
from lora_diffusion.bench.decoding_report import study_targets
from lora_diffusion.bench.report import markdown, targets
from lora_diffusion.config import ConfigError
from lora_diffusion.finetune import build_method_model
from lora_diffusion.hub import load_base, save_base
from lora_diffusion.methods.persistence import save_method
from lora_diffusion.testing import tiny_backbone

R = 8  # response tokens
T = 100  # the tiny base's T
SETTINGS = ["exact", f"steps-{T}", "low-confidence", f"threshold-1.0+steps-{R}", "threshold-0.5", "fixed-3",
            "fixed-2+block-4", "threshold-0.9+approx-cache"]


def _adapter(root, name, prefix=False, options=None):
    backbone = load_base(str(root / "base"))
    if prefix:
        backbone.prompt_attention = "prefix"
    model, fingerprint = build_method_model(backbone, "trajectory", options or {"ranks": [8, 4, 2]}, seed=0)
    save_method(model, root / name, fingerprint)  # untrained: the identity perturbation
    return root / name


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoding")
    save_base(tiny_backbone("bert", hidden=32), root / "base")
    adapter = _adapter(root, "traj")
    rows = [("capital of france:", "paris"), ("two plus two:", "four"), ("colour of the sky:", "blue"),
            ("opposite of hot:", "cold"), ("first letter:", "a")]
    (root / "qa.jsonl").write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in rows))
    args = ["--adapter", str(adapter), "--data-file", str(root / "qa.jsonl"), "--metric", "squad", "--rows", "0",
            "--response-length", str(R), "--batch-size", "3", "--rounds", "2", "--settings", ",".join(SETTINGS),
            "--note", "pytest", "--output-dir", str(root / "out")]
    assert main(args) == 0
    return root, json.loads((root / "out" / "decoding.json").read_text())


def test_files_and_provenance(study):
    root, result = study
    assert {"git_commit", "versions", "hardware", "command", "note"} <= result.keys()
    assert (root / "out" / "pareto.png").stat().st_size > 1000
    text = (root / "out" / "decoding.md").read_text()
    assert "Beside it: pytest." in text and "| threshold-0.5 |" in text and "R/4" in text
    (r,) = result["results"]
    assert r["response_budget"] == R and r["rows"] == 5 and r["method"] == "trajectory"
    assert list(r["settings"]) == SETTINGS and len(r["targets"]) == 2


def test_method_label_names_a_preset_other_than_the_papers():
    assert method_label({"method": "trajectory", "config": {"preset": "deep-all"}}) == "trajectory@deep-all"
    assert method_label({"method": "trajectory", "config": {"preset": "paper"}}) == "trajectory"
    assert method_label({"method": "lora", "config": {"r": 64}}) == "lora"


def test_bookkeeping(study):
    _, result = study
    s = result["results"][0]["settings"]
    for name, fig in s.items():
        assert fig["mask_tokens"] == 0, name  # no [MASK] left
        assert fig["passes_over_R"] == pytest.approx(fig["passes_per_sample"] / R)
        assert fig["timing"]["runs"] == 2 and len(fig["timing"]["times"]) == 2
        assert fig["metrics"]["examples"] == 5
        assert fig["empty_rows"] * 5 == pytest.approx(round(fig["empty_rows"] * 5)) and 0 <= fig["empty_rows"] <= 1
    # the exact sampler against itself, and run again at its own T: the same outputs
    for name in ("exact", f"steps-{T}"):
        assert s[name]["agree_rows"] == s[name]["agree_tokens"] == s[name]["agree_regions"] == 1.0
        assert s[name]["delta"] == 0.0
    assert s[f"steps-{T}"]["passes_per_sample"] == s["exact"]["passes_per_sample"] <= R
    # fixed K: ceil(n / K) passes per block for every row, by hand
    assert s["fixed-3"]["passes_per_sample"] == math.ceil(R / 3) == 3
    assert s["fixed-2+block-4"]["passes_per_sample"] == 2 * math.ceil(4 / 2) == 4
    assert s["fixed-3"]["calls_per_batch"] == 3  # every row in every call
    # one token per call: low-confidence with T = R and threshold 1.0 on the same grid are the same run
    lc, t1 = s["low-confidence"], s[f"threshold-1.0+steps-{R}"]
    assert lc["passes_per_sample"] == t1["passes_per_sample"] == R
    assert lc["metrics"] == t1["metrics"]
    assert 1 <= s["threshold-0.5"]["passes_per_sample"] <= R
    # the approximate cache: same calls as without it, fewer query positions per call
    approx = s["threshold-0.9+approx-cache"]
    assert approx["positions_per_sample"] / approx["passes_per_sample"] < \
        lc["positions_per_sample"] / lc["passes_per_sample"]


def test_setting_names():
    opts = setting_options("threshold-0.7+block-8+approx-cache", 16)
    assert (opts.parallel, opts.threshold, opts.block_length, opts.prompt_cache) == ("threshold", 0.7, 8, "approximate")
    assert setting_options("low-confidence", 16).num_steps == 16
    assert setting_options("fixed-4", 16).tokens_per_call == 4
    with pytest.raises(ConfigError, match="unknown part 'bogus'"):
        setting_options("threshold-0.9+bogus", 16)
    with pytest.raises(ConfigError, match="needs a float"):
        setting_options("threshold-x", 16)
    assert "threshold-0.9+exact-cache" not in default_settings("full")
    assert default_settings("prefix")[-1] == "threshold-0.9+exact-cache" and default_settings()[0] == "exact"


def _fig(passes, value, speedup):
    return {"passes_per_sample": passes, "value": value, "delta": value - 50.0,
            "timing": {"batch": 32, "speedup": {"ratio": speedup}}}


def test_targets_by_hand():
    r = {"response_budget": 16, "primary": "f1", "settings": {
        "exact": _fig(12.0, 50.0, 1.0), "a": _fig(3.0, 48.5, 9.0), "b": _fig(4.0, 49.2, 5.0),
        "c": _fig(3.5, 49.9, 4.5), "d": _fig(6.0, 51.0, 3.0)}}
    passes, speed = study_targets(r)
    assert passes["met"] and passes["setting"] == "c" and passes["bound"] == 4.0  # a is 1.5 points below
    assert speed["met"] and speed["setting"] == "b" and speed["value"] == 5.0
    r["settings"]["c"] = _fig(3.5, 48.0, 4.5)
    r["settings"]["b"] = _fig(4.5, 49.2, 3.9)
    passes, speed = study_targets(r)
    assert not passes["met"] and passes["setting"] is None and "not met" in passes["detail"]
    assert not speed["met"] and speed["setting"] == "b"


def test_aggregate(study, tmp_path):
    root, _ = study
    out = tmp_path / "generation-speed.md"
    assert main(["--aggregate", str(root / "out"), str(tmp_path / "absent"), "--output", str(out)]) == 0
    text = out.read_text()
    assert "## Targets" in text and "Missing (not run yet)" in text and "python -m lora_diffusion.bench.decoding" in text
    assert (tmp_path / "generation-speed-pareto.png").is_file()
    sha = json.loads((root / "out" / "decoding.json").read_text())["base_weights"]["sha256"]
    assert f"base weights: `{sha[:12]}`" in text and "more than one base" not in text


def test_prefix_adapter_adds_the_exact_cache(study):
    root, _ = study
    if not hasattr(load_base(str(root / "base")), "prompt_attention"):
        pytest.skip("adapters do not record prompt attention yet")
    adapter = _adapter(root, "traj-prefix", prefix=True)
    assert main(["--adapter", str(adapter), "--data-file", str(root / "qa.jsonl"), "--rows", "3",
                 "--response-length", "4", "--batch-size", "3", "--rounds", "1", "--settings",
                 "exact,threshold-0.9,threshold-0.9+exact-cache", "--output-dir", str(root / "prefix")]) == 0
    (r,) = json.loads((root / "prefix" / "decoding.json").read_text())["results"]
    s = r["settings"]
    assert r["prompt_attention"] == "prefix"
    assert s["threshold-0.9+exact-cache"]["metrics"] == s["threshold-0.9"]["metrics"]
    assert s["threshold-0.9+exact-cache"]["positions_per_sample"] < s["threshold-0.9"]["positions_per_sample"]


def test_a_setting_the_adapter_cannot_run_is_skipped_and_named(study):
    root, _ = study
    adapter = _adapter(root, "traj-deep", options={"preset": "deep-all"})  # no prompt cache on deep sites
    assert main(["--adapter", str(adapter), "--data-file", str(root / "qa.jsonl"), "--rows", "3",
                 "--response-length", "4", "--batch-size", "3", "--rounds", "1", "--settings",
                 "exact,threshold-0.9,threshold-0.9+approx-cache", "--output-dir", str(root / "deep")]) == 0
    (r,) = json.loads((root / "deep" / "decoding.json").read_text())["results"]
    assert list(r["settings"]) == ["exact", "threshold-0.9"] and r["method"] == "trajectory@deep-all"
    assert "deep trajectory sites" in r["skipped_settings"]["threshold-0.9+approx-cache"]
    assert "- threshold-0.9+approx-cache: not run on this adapter (" in (root / "deep" / "decoding.md").read_text()


def _bench_result():
    lat = {name: {"median_s": 2.0, "per_sample_s": 0.25} for name in
           ("base", "trajectory", "lora", "lora-merged", "adapter", "prefix", "bitfit")}
    timing = {"min_s": 1.0, "max_s": 1.0, "runs": 3}

    def setting(median, ratio, passes):
        return {**timing, "median_s": median, "samples_per_s": 32 / median, "calls": 10, "passes_per_sample": passes,
                "throughput_vs_exact": {"ratio": ratio, "round_median": ratio, "round_min": ratio, "round_max": ratio}}

    def rr(x):
        return {"ratio": x, "round_median": x, "round_min": x - 0.01, "round_max": x + 0.01}

    return {
        "config": {"base": "b", "tasks": 8, "batch": 8, "length": 128, "prompt": 32, "num_steps": 100,
                   "decoding_batch": 32},
        "hardware": {"platform": "p", "cpus": 2, "torch_threads": 1, "cuda": False},
        "inference": {"latency": lat, "response_tokens": 95,
                      "trunk_passes": {"event-driven": {"calls": 98, "rows_per_sample": 61.5}},
                      "multitask": {"times": {"one adapter": {"median_s": 2.0}}, "ratio": 1.0}},
        "decoding": {"response_tokens": 95,
                     "settings": {"exact": setting(8.0, 1.0, 61.5), "threshold-0.9": setting(1.6, 5.0, 12.0),
                                  "fixed-4": setting(2.5, 3.2, 24.0)},
                     "latency": {"setting": "threshold-0.9", "base": {**timing, "median_s": 1.55},
                                 "base_again": {**timing, "median_s": 1.56},
                                 "passes_per_sample": {"base": 12.0, "trajectory": 12.0},
                                 "trajectory_vs_base": rr(1.03), "noise": rr(1.004)}},
    }


def test_bench_decoding_targets_by_hand():
    result = _bench_result()
    got = {t["target"]: (round(t["value"], 4), t["met"]) for t in targets(result) if t.get("part") == "decoding"}
    assert got == {"trajectory generation latency / frozen base at threshold-0.9 (batch 32)": (1.03, False),
                   "noise floor of that latency ratio: |frozen base / frozen base - 1| (%)": (0.4, True)}
    result["targets"] = targets(result)
    text = markdown(result)
    assert "throughput / exact sampler" not in text.split("## Parallel decoding")[0]  # a target of the studies
    assert "| fixed-4 | 10 | 24.00 |" in text and "Noise floor: the frozen base timed twice" in text


def test_an_interrupted_study_resumes_from_its_finished_pieces(study, monkeypatch):
    """Interrupted in its timed rounds, the study keeps every metric run and the finished rounds;
    run again it generates only what was left and equals the uninterrupted study's metrics."""
    import lora_diffusion.bench.decoding as decoding
    import lora_diffusion.generation as generation

    root, full = study
    settings = ["exact", "threshold-0.5", "fixed-3"]
    keep = root / "resume" / ".resume-0.json"
    kw = dict(adapter=str(root / "traj"), task="", data_root="", data_file=str(root / "qa.jsonl"), metric="squad",
              rows=0, batch_size=3, settings=settings, rounds=3, response_length=R, resume_file=keep)
    real_time_once, timed = decoding.time_once, []

    def crash_in_round_two(fn):
        if len(timed) == 4:  # round 1 (3 settings) done, one call into round 2
            raise KeyboardInterrupt
        timed.append(1)
        return real_time_once(fn)

    monkeypatch.setattr(decoding, "time_once", crash_in_round_two)
    with pytest.raises(KeyboardInterrupt):
        decoding.study_adapter(**kw)
    kept = json.loads(keep.read_text())["data"]
    assert set(kept["metric"]) == set(settings) and all(len(t) == 1 for t in kept["rounds"]["times"].values())

    monkeypatch.setattr(decoding, "time_once", real_time_once)
    real_generate, calls = generation.generate, []
    monkeypatch.setattr(generation, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    again = decoding.study_adapter(**kw)
    assert len(calls) == 3 + 2 * 3  # a warm-up each and the two rounds left; no metric run again
    for name in settings:
        assert again["settings"][name]["metrics"] == full["results"][0]["settings"][name]["metrics"]
        assert again["settings"][name]["timing"]["runs"] == 3
    # other inputs: the kept pieces are not used (everything runs again)
    calls.clear()
    decoding.study_adapter(**{**kw, "rounds": 1, "seed": 1})
    assert len(calls) == 3 * 2 + 3 + 3  # two batches of five rows per setting, a warm-up each and one round


def test_the_kept_pieces_are_dropped_once_the_result_is_written(study):
    root, _ = study
    assert not list((root / "out").glob(".resume-*"))


def test_resumed_rounds_warm_up_only_the_fast_calls(monkeypatch):
    import lora_diffusion.bench.decoding as decoding

    seen = {"fast": 0, "slow": 0}
    fns = {k: (lambda k=k: seen.__setitem__(k, seen[k] + 1)) for k in seen}
    done = {"fast": [1.0], "slow": [decoding.RESUME_WARMUP_S + 1]}
    out = decoding.timed_rounds(fns, rounds=3, done=done)
    assert seen == {"fast": 1 + 2, "slow": 2}  # the slow call is not warmed up again; two rounds left each
    assert out["slow"]["runs"] == 3 and out["slow"]["times"][0] == decoding.RESUME_WARMUP_S + 1
    seen.update(fast=0, slow=0)
    decoding.timed_rounds(fns, rounds=3, done=done | {"slow": [1.0, 2.0]})  # rounds of unequal count: ignored
    assert seen == {"fast": 4, "slow": 4}


def test_extra_settings_run_after_the_given_ones(study):
    root, _ = study
    assert main(["--adapter", str(root / "traj"), "--data-file", str(root / "qa.jsonl"), "--rows", "3",
                 "--response-length", "4", "--batch-size", "3", "--rounds", "1", "--settings", "exact,fixed-3",
                 "--extra-settings", "fixed-2+block-2,fixed-3", "--output-dir", str(root / "extra")]) == 0
    (r,) = json.loads((root / "extra" / "decoding.json").read_text())["results"]
    assert list(r["settings"]) == ["exact", "fixed-3", "fixed-2+block-2"]
