"""Committed bases: verified by digest, installed into the cache on first use, reachable by name."""

from __future__ import annotations

import json

import pytest

from lora_diffusion.hub import load_base, resolve_source, save_base
from lora_diffusion.paths import (
    COMMITTED_BASES,
    PROVENANCE_FILE,
    BaseIntegrityError,
    cached_base,
    committed_base,
    default_cache_dir,
)
from lora_diffusion.utils.repro import base_digest


@pytest.fixture
def committed(tmp_path, tiny_bert):
    root = tmp_path / "bases"
    d = save_base(tiny_bert, root / "tiny-wt2")
    (d / PROVENANCE_FILE).write_text(json.dumps({"base_digest": base_digest(d)}))
    return root


def test_a_missing_base_is_installed_from_the_checkout_then_read_from_the_cache(committed):
    assert not (default_cache_dir() / "bases" / "tiny-wt2").exists()
    found = cached_base("tiny-wt2", committed_root=committed)
    assert found == default_cache_dir() / "bases" / "tiny-wt2"
    assert base_digest(found) == base_digest(committed / "tiny-wt2")
    (committed / "tiny-wt2" / "config.json").unlink()  # the cache copy is used from now on
    assert cached_base("tiny-wt2", committed_root=committed) == found


def test_a_committed_base_that_does_not_hash_to_its_record_is_refused(committed):
    weights = next((committed / "tiny-wt2").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(BaseIntegrityError, match="records"):
        cached_base("tiny-wt2", committed_root=committed)
    assert not (default_cache_dir() / "bases" / "tiny-wt2").exists()


def test_no_committed_base_means_none(tmp_path):
    assert committed_base("nothing-here", tmp_path) is None
    assert cached_base("nothing-here", committed_root=tmp_path) is None


def test_a_cached_base_loads_by_name_and_paths_and_hub_ids_pass_through(committed, tiny_bert, tmp_path):
    cached_base("tiny-wt2", committed_root=committed)
    assert resolve_source("tiny-wt2") == str(default_cache_dir() / "bases" / "tiny-wt2")
    assert load_base("tiny-wt2").mlm.config.hidden_size == tiny_bert.mlm.config.hidden_size
    assert resolve_source("org/some-model") == "org/some-model"
    assert resolve_source("not-cached-anywhere") == "not-cached-anywhere"
    assert resolve_source(str(tmp_path)) == str(tmp_path)


def test_the_checkouts_committed_base_is_intact():
    """The base every committed result since its commit was made on (bases/README.md)."""
    if not (COMMITTED_BASES / "minilm-wt2" / "config.json").is_file():
        pytest.skip("no committed base in this checkout")
    assert committed_base("minilm-wt2") == COMMITTED_BASES / "minilm-wt2"
