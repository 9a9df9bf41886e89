"""Start a test worker as 1 process, or as 2 gloo processes with the torch.distributed variables
that ``torchrun --nproc_per_node 2`` sets (shared by the DDP, FSDP and DeepSpeed tests), and the
checks the FSDP and DeepSpeed tests share."""

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(args: list[str], world: int, extra_env: dict[str, str] | None = None, what: str = "worker",
                timeout: int = 600) -> None:
    """Run ``args`` once (world 1) or as ranks 0 and 1 (world 2); fail with the stderr tails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1",
           **(extra_env or {})}
    if world == 1:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]
        return
    port = str(free_port())
    procs = [subprocess.Popen(args, env={**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2",
                                         "RANK": str(r), "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "2"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=timeout) for p in procs]
    if any(p.returncode for p in procs):
        pytest.fail(f"{what} failed:\n" + "\n".join(err[-3000:] for _, err in outs))


def load_run(root: Path, name: str, kind: str) -> tuple[dict, dict]:
    """A worker run's ``losses.json`` and trained tensors: ``<root>/<name>-<kind>/``."""
    run = root / f"{name}-{kind}"
    return json.loads((run / "losses.json").read_text()), load_file(str(run / "trained.safetensors"))


def compare_runs(one: Path, two: Path, names: list[str], distributed_type: str) -> None:
    """Each method's 2-process run (straight and interrupted + resumed) against the 1-process one:
    losses rel 1e-5, trained tensors within 1e-5 (1e-4 for full fine-tuning, whose sharded or
    bucketed reduction sums gradients in another order), the model after training rel 1e-4."""
    for name in names:
        ref, a = load_run(one, name, "straight")
        for kind in ("straight", "resumed"):
            got, b = load_run(two, name, kind)
            assert ref["world"] == 1 and got["world"] == 2 and got["distributed_type"].endswith(distributed_type)
            assert got["losses"] == pytest.approx(ref["losses"], rel=1e-5, abs=1e-6), (name, kind)
            assert sorted(a) == sorted(b)
            worst = max((a[k] - b[k]).abs().max().item() for k in a)
            assert worst < (1e-4 if name == "full" else 1e-5), (name, kind, worst)
            assert got["after"] == pytest.approx(ref["after"], rel=1e-4), (name, kind)


def check_finetune_end_to_end(tmp_path: Path, run) -> None:
    """``run_finetune`` (trajectory) through the worker as 1 and 2 processes (``run(out, world,
    args)``): rank 0 saves the adapter and evaluates after training; both runs agree."""
    from lora_diffusion.hub import save_base
    from lora_diffusion.testing import tiny_backbone

    base = tiny_backbone("bert", seed=0)
    base.mlm.config.hidden_dropout_prob = base.mlm.config.attention_probs_dropout_prob = 0.0
    save_base(base, tmp_path / "base")
    texts = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]
    rows = [{"prompt": f"{w} is", "response": ["yes", "no"][i % 2]} for i, w in enumerate(texts * 2)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for world, out in ((1, "one"), (2, "two")):
        run(tmp_path / out, world, ["finetune", str(tmp_path / "base"), str(tmp_path / "train.jsonl"),
                                    str(tmp_path / out), "trajectory"])
    one, two = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("one", "two"))
    assert one["summary"]["processes"] == 1 and two["summary"]["processes"] == 2
    assert [h["loss"] for h in json.loads((tmp_path / "two" / "training_history.json").read_text())] == \
        pytest.approx([h["loss"] for h in json.loads((tmp_path / "one" / "training_history.json").read_text())],
                      rel=1e-5)
    a, b = (load_file(str(tmp_path / d / "adapter" / "adapter_model.safetensors")) for d in ("one", "two"))
    assert sorted(a) == sorted(b) and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert two["dev"]["metrics"] == one["dev"]["metrics"]
    assert two["dev_denoising"] == pytest.approx(one["dev_denoising"], rel=1e-4)
