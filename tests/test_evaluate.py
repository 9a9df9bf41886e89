"""`evaluate` on a registered task with a classification adapter, and with a base alone."""

import json

import pytest

from lora_diffusion.cli import main
from lora_diffusion.demo import resource
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone
from lora_diffusion.utils.repro import base_digest


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    save_base(tiny_backbone("bert"), tmp / "base")
    assert main(["demo", "--base", str(tmp / "base"), "--output-dir", str(tmp / "demo"), "--steps", "2",
                 "--eval-limit", "4", "--set", "method_options.ranks=[8,4,2]"]) == 0
    data = tmp / "sst2"
    data.mkdir()
    lines = resource("sst2_dev.tsv").read_text().splitlines()
    (data / "dev.tsv").write_text("\n".join(lines[:11]) + "\n")
    return tmp


def test_evaluate_task_split_with_classification_adapter(demo_run, capsys):
    out = demo_run / "eval-sst2"
    assert main(["evaluate", "--adapter", str(demo_run / "demo" / "adapter"), "--task", "sst2", "--data-dir",
                 str(demo_run / "sst2"), "--output-dir", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"] == 10 and metrics["rows"]["response_budget"] == 1
    assert printed["metrics"]["accuracy"] == pytest.approx(100 * metrics["accuracy"])  # text == token exact match
    assert "valid_label_rate" in metrics and metrics["data"]["eval_split"] == "dev"  # (the demo trains no head)
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 10 and {"label", "prediction", "references"} <= preds[0].keys()
    # the base the adapter ran on is recorded by the digest of its weights, as the demo's run recorded it
    demo = json.loads((demo_run / "demo" / "demo_summary.json").read_text())
    assert metrics["base_weights"]["sha256"] == base_digest(demo_run / "base") == demo["base_weights"]["sha256"]


def test_evaluate_labelled_file_maps_label_words(demo_run, capsys):
    f = demo_run / "mine.jsonl"
    f.write_text('{"prompt": "review: great fun sentiment:", "response": "positive"}\n'
                 '{"prompt": "review: dull sentiment:", "response": "Negative"}\n')
    assert main(["evaluate", "--adapter", str(demo_run / "demo" / "adapter"), "--data-file", str(f),
                 "--output-dir", str(demo_run / "eval-file")]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 2
    f.write_text('{"prompt": "review: great fun sentiment:", "response": "great"}\n')
    assert main(["evaluate", "--adapter", str(demo_run / "demo" / "adapter"), "--data-file", str(f),
                 "--output-dir", str(demo_run / "eval-file2")]) == 2
    assert "not one of the adapter's label words" in capsys.readouterr().err


def test_evaluate_and_generate_with_a_base_alone(demo_run, capsys):
    f = demo_run / "qa.jsonl"
    f.write_text('{"prompt": "capital of france:", "response": "paris"}\n')
    assert main(["evaluate", "--base", str(demo_run / "base"), "--data-file", str(f), "--metric", "squad",
                 "--output-dir", str(demo_run / "eval-base"), "--response-length", "4", "--steps", "8"]) == 0
    result = json.loads((demo_run / "eval-base" / "metrics.json").read_text())
    assert result["primary"] == "f1" and result["rows"]["response_budget"] == 4 and result["adapter"] is None
    capsys.readouterr()
    assert main(["generate", "--base", str(demo_run / "base"), "--prompt", "capital of france:",
                 "--response-length", "4", "--temperature", "0.8"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_bad_inputs_are_one_line(demo_run, capsys, tmp_path):
    adapter = str(demo_run / "demo" / "adapter")
    assert main(["evaluate", "--adapter", adapter, "--task", "sst2", "--output-dir", str(tmp_path / "x"),
                 "--data-file", "y.jsonl"]) == 2
    assert "exactly one of a task or a data_file" in capsys.readouterr().err
    assert main(["evaluate", "--adapter", adapter, "--data-file", str(tmp_path / "absent.jsonl"),
                 "--output-dir", str(tmp_path / "x")]) == 2
    assert "data file not found" in capsys.readouterr().err
    assert main(["generate", "--adapter", adapter]) == 2
    assert "--prompt TEXT" in capsys.readouterr().err
    assert main(["evaluate", "--adapter", adapter, "--task", "sst2", "--output-dir", str(tmp_path / "y"),
                 "--set", "sampling.remasking=best"]) == 2
    assert "sampling.remasking" in capsys.readouterr().err


def test_an_interrupted_evaluation_resumes_and_leaves_no_kept_batches(demo_run, capsys, monkeypatch):
    """Cut at its second batch, ``evaluate`` run again generates only the batches left and
    scores as an uninterrupted run; the kept batches are dropped with metrics.json."""
    import lora_diffusion.generation as generation

    args = ["evaluate", "--adapter", str(demo_run / "demo" / "adapter"), "--task", "sst2", "--data-dir",
            str(demo_run / "sst2"), "--batch-size", "4"]
    assert main([*args, "--output-dir", str(demo_run / "whole")]) == 0
    whole = json.loads((demo_run / "whole" / "metrics.json").read_text())
    real, calls = generation.generate, []

    def cut_at_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(generation, "generate", cut_at_second)
    capsys.readouterr()
    assert main([*args, "--output-dir", str(demo_run / "cut")]) != 0
    assert "the finished batches are kept: run the same command again" in capsys.readouterr().err
    assert (demo_run / "cut" / ".resume-eval.json").is_file() and not (demo_run / "cut" / "metrics.json").exists()
    calls.clear()
    monkeypatch.setattr(generation, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main([*args, "--output-dir", str(demo_run / "cut")]) == 0
    again = json.loads((demo_run / "cut" / "metrics.json").read_text())
    assert len(calls) == 2 and again["metrics"] == whole["metrics"]  # 10 rows in batches of 4: two left
    assert not (demo_run / "cut" / ".resume-eval.json").exists()
    capsys.readouterr()
