"""``utils.resume.ResumeFile``: pieces survive a new process under the same key, not under another."""

from lora_diffusion.utils.resume import ResumeFile


def test_pieces_come_back_under_the_same_key_only(tmp_path):
    path = tmp_path / "r.json"
    first = ResumeFile(path, {"rows": 5, "settings": ("a", "b")})
    assert not first.resumed and first.get("metric", "a") is None
    first.put("metric", "a", {"value": 1.5, "tokens": [[1, 2]]})
    again = ResumeFile(path, {"rows": 5, "settings": ["a", "b"]})  # a tuple reads back as a list
    assert again.resumed and again.get("metric", "a") == {"value": 1.5, "tokens": [[1, 2]]}
    other = ResumeFile(path, {"rows": 6, "settings": ["a", "b"]})
    assert not other.resumed and other.get("metric", "a") is None
    other.put("metric", "b", 2)  # overwrites the stale file
    assert ResumeFile(path, {"rows": 5, "settings": ["a", "b"]}).get("metric", "a") is None
    other.remove()
    assert not path.exists()


def test_a_torn_or_foreign_file_is_ignored(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{not json")
    assert not ResumeFile(path, {"k": 1}).resumed
    path.write_text("[1, 2]")
    assert not ResumeFile(path, {"k": 1}).resumed
