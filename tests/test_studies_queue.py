"""scripts/studies.sh: the queue lists every open study, and each item names files that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _list() -> list[str]:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    out = subprocess.run(["bash", "scripts/studies.sh", "list"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_every_item_names_existing_scripts_and_configs():
    lines = _list()
    assert [line.split()[0] for line in lines][:3] == ["speed", "bf16", "tasks"]
    for line in lines:
        for path in re.findall(r"(?:reports|scripts)/[\w./-]+\.(?:sh|yaml)", line):
            assert (ROOT / path).is_file(), f"{line.split()[0]}: {path} missing"
        assert "--base bases/minilm-wt2" in line or "bases/minilm-wt2 " in line


def test_a_worker_without_a_base_refuses_in_one_line(tmp_path):
    out = subprocess.run(["bash", "scripts/studies.sh", "worker"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "BASE": str(tmp_path / "none")})
    assert out.returncode == 2 and out.stderr.strip().startswith("no base at")
    assert "Traceback" not in out.stderr


def test_unknown_command_is_refused():
    out = subprocess.run(["bash", "scripts/studies.sh", "bogus"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "usage" in out.stderr
