"""The base digest every run records: which weights, whatever the path."""

import shutil

from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone
from lora_diffusion.utils.repro import base_digest, provenance


def test_base_digest_follows_the_bytes_not_the_path(tmp_path):
    save_base(tiny_backbone("bert"), tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = base_digest(tmp_path / "a")
    assert first is not None and len(first) == 64 and base_digest(tmp_path / "b") == first
    weights = next((tmp_path / "b").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert base_digest(tmp_path / "b") not in (None, first)
    (tmp_path / "a" / "notes.txt").write_text("not a weight file")  # other files are not part of it
    assert base_digest(tmp_path / "a") == first


def test_base_digest_is_none_for_what_is_not_a_local_model(tmp_path):
    assert base_digest(tmp_path / "missing") is None
    assert base_digest(tmp_path) is None  # a directory with no weight files
    assert "base_weights" not in provenance(0)
    assert provenance(0, base="some/hub-id")["base_weights"] == {"path": "some/hub-id", "sha256": None}
