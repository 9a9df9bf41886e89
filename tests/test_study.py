import json

from lora_diffusion.cli import main
from lora_diffusion.demo import resource
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone


def _setup(tmp_path):
    save_base(tiny_backbone("bert", seed=0), tmp_path / "base")
    data = tmp_path / "sst2"
    data.mkdir()
    lines = resource("sst2_train_sample.tsv").read_text().splitlines()
    (data / "train.tsv").write_text("\n".join(lines[:41]) + "\n")
    (data / "dev.tsv").write_text("\n".join(lines[:1] + lines[41:53]) + "\n")
    return data


def test_tiny_study_is_idempotent_and_reports(tmp_path, capsys):
    data = _setup(tmp_path)
    args = ["study", "--base", str(tmp_path / "base"), "--data-dir", str(data), "--methods", "full,bitfit",
            "--seeds", "1,2,3", "--num-seeds", "3", "--steps", "2", "--output-dir", str(tmp_path / "study"), "--quiet",
            "--set", "train.batch_size=8", "--set", "train.micro_batch_size=8", "--set", "validation_rows=8",
            "--set", "train.save_every=1", "--set", "method_lr.bitfit=1e-2"]
    assert main(args) == 0
    done = sorted((tmp_path / "study").glob("*/seed-*/result.json"))
    assert len(done) == 6
    stamps = [p.stat().st_mtime_ns for p in done]
    assert main(args) == 0  # second run: everything skipped
    assert [p.stat().st_mtime_ns for p in done] == stamps
    bitfit = json.loads((tmp_path / "study" / "bitfit" / "seed-2" / "result.json").read_text())
    assert bitfit["config"]["train"]["lr"] == 1e-2 and bitfit["config"]["train"]["seed"] == 2
    assert main(["report", "--study", str(tmp_path / "study"), "--output", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| full | 3 |" in report and "| bitfit | 3 |" in report and "Bonferroni over 1 comparisons" in report
    assert (tmp_path / "rep" / "accuracy_vs_parameters.png").is_file()
    assert (tmp_path / "rep" / "learning_curves.png").is_file()


def test_study_rejects_unknown_methods(tmp_path, capsys):
    assert main(["study", "--methods", "full,dora", "--output-dir", str(tmp_path)]) == 2
    assert "methods: unknown ['dora']" in capsys.readouterr().err
