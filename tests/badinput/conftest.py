"""The bad-input suite's world: a tiny base, users' files, task files and finished runs of
three methods, made once per session; and ``cli``, which runs a command in-process and checks
that no file outside the command's own output directory changed (size, mtime and SHA-256 of
every file under the world and the test's own directory)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from lora_diffusion.cli import main
from lora_diffusion.demo import resource
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone

WORDS = "apple river house music paper window garden money".split()
COLOURS = "red blue green black white pink grey brown".split()
ROWS = [{"prompt": f"word {w} means:", "response": f"{w} {c}"} for w, c in zip(WORDS, COLOURS)]
SMALL = {"trajectory": ["--set", "method_options={ranks: [4, 4, 2], time_dim: 8, cond_dim: 8}"],
         "lora": ["--set", "method_options.rank=2"], "full": []}


def finetune_args(world: World, out: Path, method: str = "trajectory", *extra: str) -> list[str]:
    """A 1-step run on the 8-row file (batch 4, a checkpoint every step, 8 reverse steps)."""
    return ["finetune", "--method", method, "--base", str(world.base), "--data-file", str(world.train),
            "--eval-file", str(world.dev), "--output-dir", str(out), "--quiet", "--steps", "1",
            "--set", "train.batch_size=4", "--set", "train.micro_batch_size=4", "--set", "train.warmup_steps=0",
            "--set", "train.save_every=1", "--set", "sampling.num_steps=8", *SMALL[method], *extra]


@dataclass
class World:
    root: Path

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def train(self) -> Path:
        return self.root / "data" / "train.jsonl"

    @property
    def dev(self) -> Path:
        return self.root / "data" / "dev.jsonl"

    @property
    def sst2(self) -> Path:
        return self.root / "data" / "sst2"

    @property
    def corpus(self) -> Path:
        return self.root / "data" / "corpus.txt"

    def run(self, name: str) -> Path:
        """A finished run: trajectory, lora, full (checkpoints kept) or nockpt (trajectory, save_every=0)."""
        return self.root / "runs" / name

    def adapter(self, name: str) -> Path:
        return self.run(name) / "adapter"

    def copy(self, name: str, dest: Path) -> Path:
        """A private copy of a finished run (to damage or to overwrite)."""
        return Path(shutil.copytree(self.run(name), dest / name))


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("world"))
    save_base(tiny_backbone("bert", seed=0), w.base)
    w.train.parent.mkdir()
    w.train.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    w.dev.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:4]))
    w.sst2.mkdir()
    lines = resource("sst2_train_sample.tsv").read_text().splitlines()
    (w.sst2 / "train.tsv").write_text("\n".join(lines[:13]) + "\n")
    (w.sst2 / "dev.tsv").write_text("\n".join(lines[:1] + lines[13:17]) + "\n")
    w.corpus.write_text("the cat sat on the mat and looked at the dog in the garden\n" * 60)
    for method in ("trajectory", "lora", "full"):
        assert main(finetune_args(w, w.run(method), method)) == 0
    assert main(finetune_args(w, w.run("nockpt"), "trajectory", "--set", "train.save_every=0")) == 0
    return w


def snapshot(roots: list[Path], exclude: list[Path]) -> dict[Path, tuple[int, int, str]]:
    out = {}
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not any(p == e or e in p.parents for e in exclude):
                st = p.stat()
                out[p] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


class Cli:
    """``run``: any outcome, checking the files outside ``own``; ``refused``: exit code 2 (or
    ``rc``), exactly one ``lora-diffusion <command>: ...`` line holding every needle, no traceback."""

    def __init__(self, capsys, world: World, tmp_path: Path) -> None:
        self.capsys, self.roots = capsys, [world.root, tmp_path]
        self.cache = tmp_path / "cache"  # LORA_DIFFUSION_HOME of the test (tests/conftest.py)

    def run(self, args: list[str], own: Path | None = None) -> tuple[int, str, str]:
        exclude = [self.cache] + ([own] if own is not None else [])
        self.capsys.readouterr()
        before = snapshot(self.roots, exclude)
        rc = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        after = snapshot(self.roots, exclude)
        changed = sorted(str(p) for p in before.keys() | after.keys() if before.get(p) != after.get(p))
        assert not changed, f"files outside the command's own directory changed: {changed}\n{err}"
        return rc, out, err

    def refused(self, args: list[str], *needles: str, own: Path | None = None, rc: int = 2) -> str:
        code, _, err = self.run(args, own)
        lines = [line for line in err.splitlines() if line.startswith("lora-diffusion ")]
        assert code == rc, err
        assert len(lines) == 1 and "Traceback" not in err, err
        for needle in needles:
            assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
        return lines[0]


@pytest.fixture
def cli(capsys, world, tmp_path) -> Cli:
    return Cli(capsys, world, tmp_path)
