"""Start a test worker as 1 process, or as 2 gloo processes with the torch.distributed variables
that ``torchrun --nproc_per_node 2`` sets (shared by the DDP, FSDP and DeepSpeed tests)."""

import os
import socket
import subprocess

import pytest


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
