"""t-SNE of the perturbations by phase and by task (analysis_tsne.py, ``analyze-tsne``)."""

import json

import pytest
import torch

from lora_diffusion.analysis_tsne import analyze_tsne, silhouette
from lora_diffusion.cli import main
from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.hub import save_base
from lora_diffusion.methods import apply_method, method_config
from lora_diffusion.methods.persistence import base_fingerprint, save_method
from lora_diffusion.testing import packaged_tokenizer, tiny_backbone

TEXTS = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]


def _adapter(offset: float, seed: int):
    torch.manual_seed(seed)
    model = apply_method("trajectory", tiny_backbone("bert", seed=0),
                         method_config("trajectory", {"ranks": [4, 4, 2], "time_dim": 8, "cond_dim": 8}))
    with torch.no_grad():
        for p in model.adapter.parameters():
            torch.nn.init.normal_(p, std=0.05)
        for bank in model.adapter.banks:
            bank.beta.bias.fill_(offset)  # a task-specific direction
    return model.eval()


def test_task_groups_separate_and_every_phase_is_there():
    data = encode_examples([(t, i % 2) for i, t in enumerate(TEXTS)], SST2, packaged_tokenizer())
    runs = [("a", _adapter(1.0, 0), data), ("b", _adapter(-1.0, 1), data)]
    result = analyze_tsne(runs, max_rows=8, seed=0, perplexity=5)
    assert len(result["points"]) == 2 * 3 * 8  # tasks x phases x rows (one response token each)
    assert sorted(set(result["phase"])) == ["early", "late", "mid"] and result["task"].count("a") == 24
    for s in result["silhouette_task_within_phase"].values():
        assert s > 0.5  # opposite beta offsets: the tasks separate in every phase
    assert all(len(p) == 2 for p in result["points"])


def test_silhouette_by_hand():
    import numpy as np

    x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    assert silhouette(x, ["p", "p", "q", "q"]) > 0.8
    assert silhouette(x, ["p", "p", "p", "p"]) is None


def test_cli_writes_points_and_figure(tmp_path, capsys):
    base = tiny_backbone("bert", seed=0)
    save_base(base, tmp_path / "base")
    for name, offset in (("pos", 1.0), ("neg", -1.0)):
        save_method(_adapter(offset, 0), tmp_path / name / "adapter", base_fingerprint(base))
    code = main(["analyze-tsne", "--adapter", str(tmp_path / "pos" / "adapter"), "--adapter",
                 str(tmp_path / "neg" / "adapter"), "--base", str(tmp_path / "base"), "--max-rows", "10",
                 "--perplexity", "5", "--output-dir", str(tmp_path / "out")])
    assert code == 0
    result = json.loads((tmp_path / "out" / "tsne.json").read_text())
    assert set(result["task"]) == {"pos", "neg"} and (tmp_path / "out" / "tsne.png").stat().st_size > 0
    assert "silhouette of the tasks" in capsys.readouterr().out
    assert main(["analyze-tsne", "--adapter", str(tmp_path / "pos" / "adapter"), "--max-rows", "0",
                 "--output-dir", str(tmp_path / "bad")]) == 2


@pytest.mark.parametrize("bad", ["lora"])
def test_refuses_other_methods(tmp_path, bad):
    base = tiny_backbone("bert", seed=0)
    save_base(base, tmp_path / "base")
    model = apply_method(bad, tiny_backbone("bert", seed=0), method_config(bad, {"rank": 2, "alpha": 4.0}))
    save_method(model, tmp_path / "a", base_fingerprint(base))
    assert main(["analyze-tsne", "--adapter", str(tmp_path / "a"), "--base", str(tmp_path / "base"),
                 "--output-dir", str(tmp_path / "o")]) == 2
