import pytest
import torch

from lora_diffusion.data.classification import (
    SST2,
    ClassificationTask,
    DataError,
    encode_examples,
    read_labelled_tsv,
)
from lora_diffusion.data.encoding import pad_collate


def test_read_tsv_errors_name_file_and_line(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("sentence\tlabel\ngood film\t1\nbad film\t7\n")
    with pytest.raises(DataError, match=r"d.tsv:3: unknown label 7"):
        read_labelled_tsv(f, {0, 1})
    f.write_text("sentence\tlabel\ngood film\t1\nno label here\n")
    with pytest.raises(DataError, match=r"d.tsv:3: expected"):
        read_labelled_tsv(f, {0, 1})
    f.write_text("text\tlabel\ngood\t1\n")
    with pytest.raises(DataError, match=r"d.tsv:1: expected header"):
        read_labelled_tsv(f, {0, 1})


def test_encoding_layout_and_single_token_labels(tokenizer):
    data = encode_examples([("a fine film", 1), ("dull " * 100, 0)], SST2, tokenizer, max_len=32)
    row = data[0]
    ids, gen = row["input_ids"], row["generate_mask"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert gen.sum() == 1 and tokenizer.decode(ids[gen]) == "positive"
    assert data.truncated == 1 and data[1]["input_ids"].shape[0] == 32
    # an over-long prompt loses its middle: the template's closing words survive
    assert tokenizer.decode(data[1]["input_ids"][data[1]["instruction_mask"]]).endswith("dull dull sentiment :")
    batch = pad_collate([data[0], data[1]], pad_id=0)
    assert batch["input_ids"].shape == (2, 32) and not batch["generate_mask"][0, ids.shape[0]:].any()
    assert torch.equal(batch["label"], torch.tensor([1, 0]))
    bad = ClassificationTask("x", "{text}", {0: "unbelievably", 1: "ok"})
    with pytest.raises(ValueError, match="single tokens"):
        encode_examples([("a", 0)], bad, tokenizer)
