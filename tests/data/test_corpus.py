import gzip

import pytest

from lora_diffusion.data.corpus import CorpusError, chunk_corpus, read_corpus


def test_missing_empty_and_non_utf8_files_are_named(tmp_path):
    with pytest.raises(CorpusError, match="not found.*nope.txt"):
        read_corpus(str(tmp_path / "nope.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(CorpusError, match="empty.*empty.txt"):
        read_corpus(str(empty))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"fine line\ncaf\xe9 au lait\n")
    with pytest.raises(CorpusError, match=r"latin1.txt: not UTF-8 text \(line 2"):
        read_corpus(str(bad))
    with pytest.raises(CorpusError, match="no file for split"):
        read_corpus(str(tmp_path), "train")


def test_directory_splits_single_file_holdout_and_gzip(tmp_path):
    (tmp_path / "train.txt").write_text("a b c\n\nd e f\n")
    (tmp_path / "valid.txt").write_text("v w\n")
    assert read_corpus(str(tmp_path), "train") == ["a b c", "d e f"]
    assert read_corpus(str(tmp_path), "validation") == ["v w"]
    lines = [f"line {i}" for i in range(100)]
    gz = tmp_path / "c.txt.gz"
    gz.write_bytes(gzip.compress("\n".join(lines).encode()))
    train, val = read_corpus(str(gz), "train"), read_corpus(str(gz), "validation")
    assert train == lines[:95] and val == lines[95:]


def test_chunks_wrap_cls_sep_and_mark_only_text(tokenizer):
    data = chunk_corpus(["the quick brown fox jumps over the lazy dog"] * 20, tokenizer, seq_len=16)
    item = data[0]
    assert item["input_ids"][0] == tokenizer.cls_token_id and item["input_ids"][-1] == tokenizer.sep_token_id
    assert not item["generate_mask"][0] and not item["generate_mask"][-1] and item["generate_mask"][1:-1].all()
    assert data.input_ids.shape[1] == 16 and data.num_tokens == len(data) * 14
    assert len(chunk_corpus(["word " * 200], tokenizer, seq_len=16, max_chunks=3)) == 3
    with pytest.raises(CorpusError, match="too short"):
        chunk_corpus(["hi"], tokenizer, seq_len=64)
