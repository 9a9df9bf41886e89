"""Eq. 28 over the steps of each phase: a hand-built perturbation set of known rank, and the
``analyze-rank`` command on any task's rows (a labelled file here)."""

import json
import math

import pytest
import torch

from lora_diffusion.analysis import analyze_rank_steps, effective_rank
from lora_diffusion.cli import main
from lora_diffusion.data.classification import SST2, encode_examples, read_labelled_tsv
from lora_diffusion.demo import resource
from lora_diffusion.finetune import build_method_model
from lora_diffusion.hub import load_base, save_base
from lora_diffusion.methods.persistence import save_method
from lora_diffusion.testing import tiny_backbone


def test_effective_rank_of_a_matrix_of_known_rank():
    torch.manual_seed(0)
    q1, _ = torch.linalg.qr(torch.randn(30, 30, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    m = q1[:, :3] @ torch.diag(torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)) @ q2[:, :3].T  # rank 3, flat spectrum
    assert effective_rank(torch.linalg.svdvals(m.double())) == pytest.approx(3.0, abs=1e-9)


def test_steps_effective_rank_of_a_hand_built_perturbation(tmp_path):
    model, _ = build_method_model(tiny_backbone("bert"), "trajectory", {"ranks": [8, 4, 2]})
    basis = torch.zeros(3, model.backbone.hidden_size)
    basis[0, 0], basis[1, 1], basis[2, 2] = 1.0, 1.0, 1.0

    def delta(h, steps, instruction_mask=None, input_ids=None):  # rank 2 over odd / even steps, 3 at t % 3
        k = (steps % 2) if late else (steps % 3)
        return basis[k][:, None, :].expand(h.shape).clone()

    model.adapter.delta = delta
    data = encode_examples(read_labelled_tsv(resource("sst2_dev.tsv"), set(SST2.verbalizer))[:5], SST2,
                           model.backbone.tokenizer)
    late = True
    res = analyze_rank_steps(model, data, max_rows=5)
    # late steps 1..33: 17 odd, 16 even rows -> singular values sqrt(17), sqrt(16)
    p = torch.tensor([math.sqrt(17), 4.0], dtype=torch.float64)
    p = p / p.sum()
    assert res["late"]["effective_rank"] == pytest.approx(math.exp(float(-(p * p.log()).sum())))
    assert res["late"]["positions"] == 5 and res["late"]["effective_rank_sd"] == pytest.approx(0.0, abs=1e-12)
    assert res["late"]["steps"] == [1, 33]
    late = False
    res = analyze_rank_steps(model, data, max_rows=5)
    assert 2.9 < res["early"]["effective_rank"] <= 3.0 + 1e-9  # 34 steps over 3 residues: nearly flat rank 3


def test_analyze_rank_cli_on_a_data_file(tmp_path, capsys):
    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    model, fingerprint = build_method_model(load_base(str(tmp_path / "base")), "trajectory", {"ranks": [8, 4, 2]})
    with torch.no_grad():
        for bank in model.adapter.banks:
            bank.up.normal_()
    save_method(model, tmp_path / "adapter", fingerprint)
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"question: what is {i} plus one? answer:", "response": f"{i + 1}"})
                         + "\n" for i in range(6)))
    out = tmp_path / "rank"
    assert main(["analyze-rank", "--adapter", str(tmp_path / "adapter"), "--data-file", str(f), "--max-rows", "4",
                 "--output-dir", str(out)]) == 0
    ranks = json.loads((out / "effective_rank.json").read_text())
    assert set(ranks) == {"early", "mid", "late"} and (out / "effective_rank.png").is_file()
    for r in ranks.values():
        assert r["over"] == "steps" and r["rows"] == 4 and r["positions"] > 4 and 1 <= r["effective_rank"] <= 34
    assert main(["analyze-rank", "--adapter", str(tmp_path / "adapter"), "--data-file", str(f), "--over", "rows",
                 "--max-rows", "4", "--output-dir", str(tmp_path / "rank-rows")]) == 0
    assert main(["analyze-rank", "--adapter", str(tmp_path / "adapter"), "--data-file", str(f), "--task", "sst2",
                 "--output-dir", str(tmp_path / "r2")]) == 2
    # --over factors: no data; the saved modules' spectra equal the in-memory model's
    from lora_diffusion.analysis import factor_spectra

    assert main(["analyze-rank", "--adapter", str(tmp_path / "adapter"), "--over", "factors",
                 "--output-dir", str(tmp_path / "fac")]) == 0
    saved = json.loads((tmp_path / "fac" / "factors.json").read_text())
    assert saved == json.loads(json.dumps(factor_spectra(model)))
    assert [saved[f"{p}/0"]["rank"] for p in ("early", "mid", "late")] == [8, 4, 2]  # random factors: full rank
