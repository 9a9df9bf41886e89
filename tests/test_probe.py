"""Probes of the frozen base (probe.py): features against the trunk written out, choices made on
validation only, classification tasks only, and the CLI's one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lora_diffusion.config import ConfigError
from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.probe import Features, fit_probes, frozen_features
from lora_diffusion.testing import packaged_tokenizer, tiny_backbone

TEXTS = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]


def _rows(n=8):
    return encode_examples([(TEXTS[i % 8], i % 2) for i in range(n)], SST2, packaged_tokenizer())


def test_features_are_the_frozen_trunk_states_at_the_masked_label_and_the_prompt_mean():
    backbone = tiny_backbone("bert", seed=0)
    data = _rows()
    feats = frozen_features(backbone, data, data.label_token_ids, batch_size=3)
    layers = backbone.mlm.config.num_hidden_layers
    assert feats.layers.shape == (8, layers + 1, 2, backbone.hidden_size)
    assert feats.labels.tolist() == [i % 2 for i in range(8)]
    row = data[5]  # alone (no padding): the same numbers as in a padded batch
    g = row["generate_mask"]
    x = row["input_ids"].masked_fill(g, backbone.mask_token_id)[None]
    steps = torch.tensor([backbone.diffusion.num_steps])
    with torch.no_grad():
        last, states = backbone.hidden_states(x, row["attention_mask"][None], steps, all_layers=True)
    m, prompt = int(g.float().argmax()), row["instruction_mask"]
    torch.testing.assert_close(torch.from_numpy(feats.layers[5, -1, 0]), last[0, m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.from_numpy(feats.layers[5, 2, 1]), states[2][0, prompt].mean(0), atol=1e-5,
                               rtol=1e-5)
    words = sorted(data.label_token_ids)
    logits = backbone.head(last[0, m])[[data.label_token_ids[k] for k in words]]
    assert feats.zero_shot[5] == words[int(logits.argmax())]
    assert feats.select("head").shape == (8, backbone.hidden_size)
    assert feats.select("all").shape == (8, (layers + 1) * 2 * backbone.hidden_size)
    with pytest.raises(ConfigError, match="feature set 'middle'"):
        feats.select("middle")


def test_free_text_rows_are_refused():
    from lora_diffusion.data.encoding import ResponseFormat, tokenize_examples
    from lora_diffusion.data.examples import Example

    backbone = tiny_backbone("bert", seed=0)
    rows = tokenize_examples([Example(prompt="say hi", response="hi there")], packaged_tokenizer(),
                             ResponseFormat(response_budget=4, max_prompt_len=8))
    with pytest.raises(ConfigError, match="classification task"):
        frozen_features(backbone, rows, {0: 1, 1: 2})


def _synthetic(n, seed, flip=0.0):
    """Labels from the sign of one 'all' feature that the 'head' set does not contain."""
    gen = np.random.default_rng(seed)
    layers = gen.normal(size=(n, 2, 2, 3)).astype(np.float32)
    labels = (layers[:, 0, 1, 0] > 0).astype(int)
    noisy = labels ^ (gen.random(n) < flip)
    return Features(layers, noisy, np.zeros(n, dtype=int))


def test_probes_choose_on_validation_and_report_that_choice_once():
    train, val, test = _synthetic(400, 0), _synthetic(200, 1), _synthetic(200, 2)
    out = {(p["features"], p["classifier"]): p for p in fit_probes(train, val, test, mlp=False)}
    full = out[("all", "logistic regression")]
    assert full["validation_accuracy"] == max(full["validation_by_choice"].values())
    assert full["test_accuracy"] > 0.95 and full["dims"] == 12
    assert out[("head", "logistic regression")]["test_accuracy"] < 0.7  # the label is not in the head's features
    base = out[("-", "base head (untrained)")]  # always says 0
    assert base["test_accuracy"] == pytest.approx(1 - test.labels.mean())


def test_cli_errors_are_one_line(tmp_path):
    cmd = [sys.executable, "-m", "lora_diffusion.cli", "analyze-probe", "--task", "sst2", "--base", "nowhere",
           "--output-dir", str(tmp_path / "out")]
    bad = subprocess.run(cmd + ["--max-train-rows", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--max-train-rows" in bad.stderr
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "probe.json").write_text(json.dumps({"kept": True}))
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert json.loads((tmp_path / "out" / "probe.json").read_text()) == {"kept": True}


def test_run_probe_end_to_end_on_a_tiny_base(tmp_path):
    from lora_diffusion.demo import resource
    from lora_diffusion.hub import save_base
    from lora_diffusion.probe import run_probe

    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    data = tmp_path / "sst2"
    data.mkdir()
    lines = resource("sst2_train_sample.tsv").read_text().splitlines()
    (data / "train.tsv").write_text("\n".join(lines[:41]) + "\n")
    (data / "dev.tsv").write_text("\n".join(lines[:1] + lines[41:53]) + "\n")
    result = run_probe("sst2", str(tmp_path / "base"), "", str(tmp_path / "out"), validation_rows=8, seed=3,
                       mlp=False, data_dir=str(data))
    assert result["rows"] == {"train": 32, "validation": 8, "test": 12} and result["eval_split"] == "dev"
    assert [p["features"] for p in result["probes"]] == ["-", "head", "last", "all"]
    assert json.loads((tmp_path / "out" / "probe.json").read_text())["seed"] == 3
    assert "| all | logistic regression |" in (tmp_path / "out" / "probe.md").read_text()
    from lora_diffusion.probe import summary_markdown

    table = summary_markdown([result])
    acc = 100 * result["probes"][3]["test_accuracy"]
    assert "| sst2 | 32 | dev (12) |" in table and table.splitlines()[2].endswith(f"| {acc:.1f} |")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_probe("sst2", str(tmp_path / "base"), "", str(tmp_path / "out"), validation_rows=8, data_dir=str(data))
