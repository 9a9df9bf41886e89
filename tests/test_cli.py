import json

from lora_diffusion.cli import main
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone


def test_bad_config_value_exits_2_naming_field(capsys, tmp_path):
    rc = main(["pretrain", "--output-dir", str(tmp_path), "--set", "diffusion.num_steps=0"])
    assert rc == 2 and "diffusion.num_steps" in capsys.readouterr().err
    rc = main(["pretrain", "--output-dir", str(tmp_path), "--steps", "-1"])
    assert rc == 2 and "train.max_steps" in capsys.readouterr().err


def test_missing_corpus_fails_before_loading_anything(capsys, tmp_path):
    rc = main(["pretrain", "--corpus", str(tmp_path / "absent.txt"), "--output-dir", str(tmp_path / "o")])
    assert rc == 2 and "absent.txt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_demo_end_to_end_on_tiny_base(tmp_path, capsys):
    save_base(tiny_backbone("bert"), tmp_path / "base")
    rc = main(["demo", "--base", str(tmp_path / "base"), "--output-dir", str(tmp_path / "demo"),
               "--steps", "2", "--eval-limit", "8", "--set", "method_options.ranks=[8,4,2]"])
    assert rc == 0
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())
    assert summary["steps"] == 2 and summary["dev_rows"] == 8 and "git_commit" in summary
    assert 0.0 <= summary["tuned"]["accuracy"] <= 1.0 and summary["method"] == "trajectory"
    assert "generation accuracy" in capsys.readouterr().out


def test_eval_base_cli(tmp_path, capsys):
    save_base(tiny_backbone("bert"), tmp_path / "base")
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat and looked at the dog\n" * 50)
    out = tmp_path / "eval.json"
    rc = main(["eval-base", "--base", str(tmp_path / "base"), "--corpus", str(corpus), "--split", "validation",
               "--seq-len", "16", "--output", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["ppl_bound"] > 1 and 0 <= result["acc@15"] <= 1 and {"acc@50", "acc@90"} <= result.keys()


def test_plot_writes_png(tmp_path):
    hist = tmp_path / "training_history.json"
    hist.write_text(json.dumps([{"step": 0, "eval/nelbo_per_token": 9.0}, {"step": 1, "loss": 8.0},
                                {"step": 2, "loss": 7.5, "eval/nelbo_per_token": 7.0}]))
    out = tmp_path / "curve.png"
    assert main(["plot", "--history", str(hist), "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_methods_and_params(tmp_path, capsys):
    assert main(["methods"]) == 0
    assert "trajectory" in capsys.readouterr().out
    save_base(tiny_backbone("bert"), tmp_path / "base")
    assert main(["params", "--method", "trajectory", "--base", str(tmp_path / "base"),
                 "--set", "method_options.ranks=[8,4,2]", "--set", "method_options.cond_dim=16"]) == 0
    out = capsys.readouterr().out
    assert "adapter banks" in out and "instruction encoder" in out
    assert main(["finetune", "--method", "nope"]) == 2
    assert "registered: ['adapter', 'bitfit', 'full', 'lora', 'prefix', 'trajectory', 'trajectory-composed']" in capsys.readouterr().err
    assert main(["finetune", "--task", "imdb"]) == 2
    assert "task: unknown task 'imdb'" in capsys.readouterr().err
