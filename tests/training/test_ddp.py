"""2-process DDP (gloo, CPU) reproduces the single-process run at the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lora_diffusion.demo import resource
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(out: Path) -> list[float]:
    return [h["loss"] for h in json.loads((out / "training_history.json").read_text()) if "loss" in h]


def test_two_process_ddp_matches_single_process(tmp_path):
    base = tiny_backbone("bert", seed=0)
    for m in base.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    base.mlm.config.hidden_dropout_prob = base.mlm.config.attention_probs_dropout_prob = 0.0
    save_base(base, tmp_path / "base")
    corpus = str(resource("wikitext2_train_head.txt.gz"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    single = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "base"), corpus, str(tmp_path / "one"), "4", "2"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / "base"), corpus, str(tmp_path / "two"), "4", "2"],
                              env={**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2",
                                   "RANK": str(r), "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "2"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    if any(p.returncode for p in procs):
        pytest.fail("DDP worker failed:\n" + "\n".join(err[-2000:] for _, err in outs))
    summary = json.loads((tmp_path / "two" / "training_summary.json").read_text())
    assert summary["processes"] == 2 and summary["accumulation_steps"] == 1
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-5)
    a = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
