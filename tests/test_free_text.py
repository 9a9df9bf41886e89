"""Free-text instruction tuning end to end, through the CLI in subprocesses: a tiny model
memorises a 20-row JSONL with `finetune --data-file`, `evaluate` scores it exactly and
`generate` prints the memorised responses."""

import json
import os
import subprocess
import sys

import pytest

from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone

KEYS = ["apple", "river", "house", "music", "paper", "window", "garden", "money", "school", "winter",
        "summer", "table", "water", "mountain", "city", "coffee", "letter", "forest", "island", "doctor"]
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "brown", "pink", "grey", "orange"]
ANIMALS = ["cat", "dog", "horse", "bird", "fish", "cow", "sheep", "goat", "duck", "frog"]
ROWS = [{"prompt": f"{k} means:", "response": f"{COLOURS[i % 10]} {ANIMALS[i * 3 % 10]}" + (" indeed" if i % 2 else "")}
        for i, k in enumerate(KEYS)]  # responses of 2 and 3 words: the model must learn where to stop


def cli(*args, check=True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "lora_diffusion.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("free_text")
    save_base(tiny_backbone("bert", hidden=64), tmp / "base")
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cli("finetune", "--method", "full", "--base", str(tmp / "base"), "--data-file", str(tmp / "train.jsonl"),
        "--output-dir", str(tmp / "run"), "--steps", "200", "--lr", "5e-3", "--quiet",
        "--set", "train.batch_size=20", "--set", "train.micro_batch_size=20", "--set", "train.warmup_steps=0",
        "--set", "train.save_every=0")
    return tmp


def test_finetune_records_the_layout_with_the_adapter(trained):
    meta = json.loads((trained / "run" / "adapter" / "adapter_config.json").read_text())
    fmt = meta["task_format"]
    assert fmt["kind"] == "generation" and fmt["response"]["response_budget"] == 8  # 3 words + end -> 8
    result = json.loads((trained / "run" / "result.json").read_text())
    assert result["dev"] is None and result["train_rows"] == 20 and result["task"]["skipped_rows"]["train"] == 0


def test_evaluate_reaches_exact_match_and_writes_only_its_output(trained):
    before = sorted(p.name for p in (trained / "run" / "adapter").iterdir())
    proc = cli("evaluate", "--adapter", str(trained / "run" / "adapter"), "--data-file", str(trained / "train.jsonl"),
               "--output-dir", str(trained / "eval"))
    summary = json.loads(proc.stdout)
    assert summary["metrics"]["accuracy"] == 100.0 and summary["examples"] == 20
    preds = [json.loads(line) for line in (trained / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [p["prediction"] for p in preds] == [r["response"] for r in ROWS]
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    assert metrics["git_commit"] is not None or metrics["versions"]["torch"]
    assert sorted(p.name for p in (trained / "run" / "adapter").iterdir()) == before
    again = cli("evaluate", "--adapter", str(trained / "run" / "adapter"), "--data-file",
                str(trained / "train.jsonl"), "--output-dir", str(trained / "eval"), check=False)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    inside = cli("evaluate", "--adapter", str(trained / "run" / "adapter"), "--data-file",
                 str(trained / "train.jsonl"), "--output-dir", str(trained / "run" / "adapter" / "e"), check=False)
    assert inside.returncode == 2 and "inside the adapter" in inside.stderr


def test_generate_prints_the_memorised_responses(trained):
    proc = cli("generate", "--adapter", str(trained / "run" / "adapter"), "--prompt", "apple means:",
               "--prompt", "river means:", "--template", "{prompt}")
    assert proc.stdout.splitlines() == [ROWS[0]["response"], ROWS[1]["response"]]
    out = trained / "gen.jsonl"
    cli("generate", "--adapter", str(trained / "run" / "adapter"), "--input-file", str(trained / "train.jsonl"),
        "--output", str(out), "--remasking", "low_confidence")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 20 and {"id", "prompt", "response"} <= lines[0].keys()
    refused = cli("generate", "--adapter", str(trained / "run" / "adapter"), "--prompt", "x", "--output", str(out),
                  check=False)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr


def test_end_bias_decides_where_responses_stop(trained):
    adapter = str(trained / "run" / "adapter")
    never = cli("generate", "--adapter", adapter, "--prompt", "apple means:", "--template", "{prompt}",
                "--end-bias=-1e4", "--response-length", "6")
    words = never.stdout.split()
    assert len(words) >= 5 and words[:2] == ROWS[0]["response"].split()  # the end token never drawn: 6 tokens
    at_once = cli("generate", "--adapter", adapter, "--prompt", "apple means:", "--template", "{prompt}",
                  "--end-bias", "1e4")
    assert at_once.stdout.strip() == ""  # the end token everywhere: an empty response
    bad = cli("generate", "--adapter", adapter, "--prompt", "x", "--set", "sampling.end_bias=nan", check=False)
    assert bad.returncode == 2 and "end_bias" in bad.stderr and "Traceback" not in bad.stderr
