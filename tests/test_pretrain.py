"""Pretraining on several corpora: each cut on its own and pooled, validation per corpus."""

from __future__ import annotations

import json
import math

import pytest

from lora_diffusion.cli import main
from lora_diffusion.config import ConfigError, PretrainConfig, TrainConfig, load_config
from lora_diffusion.data.corpus import chunk_corpus, corpus_name, read_corpus
from lora_diffusion.demo import resource
from lora_diffusion.hub import load_base, save_base
from lora_diffusion.pretrain import mixed_nelbo, run_pretrain
from lora_diffusion.testing import tiny_backbone

WIKI = str(resource("wikitext2_train_head.txt.gz"))


def _csv(tmp_path):
    path = tmp_path / "abstracts.csv"
    rows = [f'{i},"We study the number {i} and prove that it has {i % 7} friends in every field of sets."'
            for i in range(200)]
    path.write_text("id,abstract\n" + "\n".join(rows) + "\n")
    return str(path)


def _cfg(tmp_path, corpus, **kw):
    base = tmp_path / "tinybase"
    if not base.exists():
        save_base(tiny_backbone("bert", seed=0), base)
    train = TrainConfig(max_steps=2, lr=1e-3, warmup_steps=1, batch_size=4, micro_batch_size=2, save_every=0,
                        log_every=1, eval_every=0, seed=0)
    return PretrainConfig(base=str(base), corpus=corpus, output_dir=str(tmp_path / "run"), seq_len=32,
                          max_train_chunks=8, eval_chunks=4, train=train, **kw)


def test_mixed_nelbo_is_the_pooled_token_mean():
    """(2 x 100 + 4 x 300) / 400 = 3.5 nats; each corpus kept under its name."""
    out = mixed_nelbo({"a": {"nelbo_per_token": 2.0, "ppl_bound": math.exp(2), "tokens": 100},
                       "b": {"nelbo_per_token": 4.0, "ppl_bound": math.exp(4), "tokens": 300}})
    assert out["nelbo_per_token"] == pytest.approx(3.5) and out["ppl_bound"] == pytest.approx(math.exp(3.5))
    assert out["tokens"] == 400 and out["a/nelbo_per_token"] == 2.0 and out["b/tokens"] == 300
    one = {"nelbo_per_token": 2.0, "ppl_bound": math.exp(2), "tokens": 100}
    assert mixed_nelbo({"a": one}) == one  # one corpus: the records of a one-corpus run are unchanged


def test_pretrain_on_two_corpora(tmp_path):
    csv = _csv(tmp_path)
    summary = run_pretrain(_cfg(tmp_path, [WIKI, csv], csv_column="abstract"), progress=False)
    tok = load_base(str(tmp_path / "tinybase")).tokenizer
    expect = {corpus_name(WIKI): len(chunk_corpus(read_corpus(WIKI), tok, 32, 8)),
              "abstracts.csv": len(chunk_corpus(read_corpus(csv, csv_column="abstract"), tok, 32, 8))}
    got = {n: c["train_chunks"] for n, c in summary["corpora"].items()}
    assert got == expect and summary["train_chunks"] == sum(expect.values())
    assert all(c["validation_chunks"] == 2 for c in summary["corpora"].values())  # 4 shared by 2
    final = summary["validation"]["final"]
    pooled = sum(final[f"{n}/nelbo_per_token"] * final[f"{n}/tokens"] for n in expect) / final["tokens"]
    assert final["nelbo_per_token"] == pytest.approx(pooled)
    start = json.loads((tmp_path / "run" / "training_history.json").read_text())[0]
    assert start["step"] == 0 and "eval/abstracts.csv/nelbo_per_token" in start


def test_corpus_config():
    assert PretrainConfig(corpus="a.txt").corpus == ["a.txt"]  # one string: one corpus
    assert load_config(PretrainConfig, overrides={"corpus": "a.txt,b.txt"}).corpus == ["a.txt", "b.txt"]
    with pytest.raises(ConfigError, match="corpus: names a corpus twice"):
        PretrainConfig(corpus=["a.txt", "a.txt"])
    with pytest.raises(ConfigError, match="eval_chunks: must be >= the number of corpora"):
        PretrainConfig(corpus=["a.txt", "b.txt", "c.txt"], eval_chunks=2)


def test_cli_names_a_bad_corpus(tmp_path, capsys):
    code = main(["pretrain", "--base", "minilm", "--corpus", WIKI, "--corpus", str(tmp_path / "missing.txt"),
                 "--output-dir", str(tmp_path / "run"), "--steps", "1", "--quiet"])
    assert code == 2 and "missing.txt" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()
