"""Shared fixtures: tiny seeded backbones (no download) and the optional ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# LORA_DIFFUSION_TEST_THREADS=1 keeps a test run to one core beside a long job on the other
torch.set_num_threads(int(os.environ.get("LORA_DIFFUSION_TEST_THREADS", min(2, os.cpu_count() or 1))))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_DIFFUSION_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_bert():
    from lora_diffusion.testing import tiny_backbone

    return tiny_backbone("bert", seed=0)


@pytest.fixture(scope="session")
def tokenizer():
    from lora_diffusion.testing import packaged_tokenizer

    return packaged_tokenizer()
