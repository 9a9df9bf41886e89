"""The composition study: its report on hand-made runs (fast), and ``reports/composition/run.sh``
end to end on a tiny base and a tiny data root (slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lora_diffusion.report_composition import (
    COMPOSITES,
    MULTI_TASK_COLUMNS,
    TEXT_TASKS,
    ZERO_SHOT_GROUPS,
    main,
)

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "reports" / "composition" / "run.sh"
CELL = re.compile(r"^(\d+(?:\.\d+)?) \((\d+(?:\.\d+)?) / (\d+(?:\.\d+)?)\)$")


def tables(markdown: str) -> list[tuple[list[str], dict[str, dict[str, str]]]]:
    """Every markdown table: (its header cells, {first cell of a row: {header: cell}})."""
    out, lines = [], markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            headers = [c.strip() for c in line.strip("|").split("|")]
            rows = {}
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip("|").split("|")]
                rows[cells[0]] = dict(zip(headers, cells))
            out.append((headers, rows))
    return out


def table_with(markdown: str, header: str) -> dict[str, dict[str, str]]:
    found = [rows for headers, rows in tables(markdown) if header in headers]
    assert found, f"no table with column {header!r}"
    return found[0]


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")


def _evaluation(runs: Path, composite: str, column: str, accuracy: float, pairs: list[tuple[str, str]]) -> None:
    folder = runs / "zeroshot" / composite / column / "eval"
    _write(folder / "metrics.json", {"metrics": {"accuracy": accuracy, "examples": len(pairs)}, "examples": len(pairs),
                                     "git_commit": "abc123", "versions": {"torch": "2.x"},
                                     "machine": {"platform": "test", "torch_threads": 1, "cuda": None}})
    _write(folder / "predictions.jsonl", "".join(json.dumps({"prediction": p, "references": [g]}) + "\n"
                                                 for p, g in pairs))


def test_report_on_hand_made_runs(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "report"
    # both words right on 2 of 4 rows, the first word on 3, the second on 2
    _evaluation(runs, "sst2_trec", "uniform", 50.0, [("positive human", "positive human"),
                                                     ("negative location", "negative location"),
                                                     ("positive entity", "positive human"),
                                                     ("entity", "negative human")])
    _evaluation(runs, "sst2_trec", "lora-merge-ties", 25.0, [("positive human", "positive human"),
                                                             ("positive human", "negative location"),
                                                             ("negative", "positive human"), ("", "negative human")])
    _evaluation(runs, "sst2_trec", "upper-full", 100.0, [("positive human", "positive human")])
    _write(runs / "single" / "sst2_text" / "trajectory" / "result.json",
           {"dev": {"metrics": {"accuracy": 80.0}}, "git_commit": "abc123"})
    scored = {m: {"metrics": {"accuracy": v}} for m, v in (("router", 70.0), ("uniform", 60.0), ("oracle", 75.0))}
    _write(runs / "joint" / "result.json", {"per_task": {"sst2_text": scored}, "router_accuracy": {"sst2_text": 0.9},
                                            "git_commit": "def456"})
    _write(runs / "serving" / "serving_cost.json", {
        "config": {"batch": 8, "length": 128, "prompt": 32, "num_steps": 100, "rounds": 3}, "threads": 1,
        "results": {"2": {"times": {"composed": {"median_s": 1.0}, "separate": {"median_s": 1.9}},
                          "trunk_passes": {"composed": {"calls": 100}, "separate": {"calls": 200}},
                          "ratio_separate_over_composed": 1.9}}})
    _write(runs / "command.txt", "bash reports/composition/run.sh BASE DATA 1000\n")
    assert main([str(runs), str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    text = (out / "report.md").read_text()
    assert (out / "zero_shot.png").stat().st_size > 0
    sup = table_with(text, "uniform")
    assert sup["sst2_trec"]["uniform"] == "50.0 (75.0 / 50.0)"
    assert sup["sst2_trec"]["weights 1,1"] == "-" and sup["trec_ag_news"]["uniform"] == "-"
    assert table_with(text, "LoRA TIES")["sst2_trec"]["LoRA TIES"] == "25.0 (25.0 / 25.0)"
    assert table_with(text, "upper: trajectory")["sst2_trec"]["upper: full FT"] == "100.0 (100.0 / 100.0)"
    order_free = table_with(text, "model")  # A's word anywhere / B's / mean words per answer
    assert order_free["uniform"]["sst2_trec"] == "75.0 / 50.0 / 1.75"
    assert order_free["LoRA TIES"]["sst2_trec"] == "25.0 / 25.0 / 1.25"
    assert order_free["uniform"]["ag_news_sst2"] == "-" and order_free["router (pair)"]["sst2_trec"] == "-"
    best = table_with(text, "best merge")["sst2_trec"]
    assert best["best superposition"] == "uniform: 50.0" and best["best merge"] == "LoRA TIES: 25.0"
    assert best["superposition - merge"] == "25.0"
    multi = table_with(text, "joint oracle")
    assert list(multi) == list(TEXT_TASKS)
    assert [multi["sst2_text"][h] for h in ("single trajectory", "single LoRA", "joint + router", "joint uniform",
                                            "joint oracle", "router accuracy (joint)", "frozen + router")] == \
        ["80.0", "-", "70.0", "60.0", "75.0", "90.0", "-"]
    assert all(v == "-" for k, v in multi["trec_text"].items() if k != "task")
    serving = table_with(text, "separate / composed")
    assert serving["2"]["separate / composed"] == "1.90" and serving["2"]["trunk calls composed"] == "100"
    assert "bash reports/composition/run.sh BASE DATA 1000" in text
    assert "`abc123` (4 files)" in text and "`def456` (1 files)" in text and "Oracle is not applicable" in text


def test_report_on_empty_runs(tmp_path):
    assert main([str(tmp_path / "none"), str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "No result file yet" in text and "Not measured yet" in text
    assert not (tmp_path / "out" / "zero_shot.png").exists()


def _tiny_data_root(shared: Path, root: Path, rows: int = 60) -> Path:
    """The first rows of each part's files (header lines included)."""
    for name in ("sst2/train.tsv", "sst2/dev.tsv", "trec/train.csv", "trec/test.csv",
                 "ag_news/train_subset10k_alps.tsv", "ag_news/test.csv"):
        lines = (shared / name).read_text(encoding="utf-8").splitlines(keepends=True)[:rows]
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("".join(lines), encoding="utf-8")
    return root


def _number(text: str) -> float:
    return float(text.split(":")[-1])


@pytest.mark.slow
def test_run_sh_end_to_end(tmp_path, shared_data):
    from lora_diffusion.hub import save_base
    from lora_diffusion.testing import tiny_backbone

    base = tmp_path / "base"
    save_base(tiny_backbone("bert", hidden=128), base)  # hidden 128: LoRA's merge-cat doubles r = 64
    data = _tiny_data_root(shared_data, tmp_path / "data")
    runs, report = tmp_path / "runs", tmp_path / "report"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": sys.executable, "TRAIN_ROWS": "32", "EVAL_ROWS": "16", "TEXT_EVAL_ROWS": "16",
           "BENCH_ARGS": "--num-steps 4 --rounds 1 --batch 2 --length 48",
           "COMPOSITION_RUNS": str(runs), "COMPOSITION_REPORT": str(report)}

    def run() -> str:
        done = subprocess.run(["bash", str(RUN_SH), str(base), str(data), "2"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    run()
    text = (report / "report.md").read_text()
    for _, group in ZERO_SHOT_GROUPS:  # rows: the composite tasks; every column measured
        rows = table_with(text, group[0][1])
        assert list(rows) == list(COMPOSITES)
        for composite in COMPOSITES:
            assert list(rows[composite])[1:] == [label for _, label in group]
            for _, label in group:
                m = CELL.match(rows[composite][label])
                assert m, (composite, label, rows[composite][label])
                assert all(0 <= float(x) <= 100 for x in m.groups())
    multi = table_with(text, "joint oracle")
    assert list(multi) == list(TEXT_TASKS)
    for task in TEXT_TASKS:
        assert list(multi[task])[1:] == [h for h, _ in MULTI_TASK_COLUMNS]
        assert all(0 <= float(multi[task][h]) <= 100 for h, _ in MULTI_TASK_COLUMNS)
    for row in table_with(text, "best merge").values():
        assert 0 <= _number(row["best superposition"]) <= 100 and 0 <= _number(row["best merge"]) <= 100
    serving = table_with(text, "separate / composed")
    assert list(serving) == ["2", "4", "8"] and all(float(r["separate / composed"]) > 0 for r in serving.values())
    for m, row in serving.items():  # one trunk pass per step composed, M separately
        assert int(row["trunk calls separate"]) == int(m) * int(row["trunk calls composed"])
    assert "TRAIN_ROWS='32'" in text and f"run.sh {base} {data} 2" in text and "git commit" in text
    assert (report / "zero_shot.png").stat().st_size > 0

    # idempotent: a second call trains, composes and evaluates nothing
    again = run()
    assert "== finetune" not in again and "== compose" not in again and "== evaluate" not in again
    # resumable: a run without its result but with checkpoints resumes (and only records its result)
    (runs / "single" / "trec_text" / "lora" / "result.json").unlink()
    resumed = run()
    assert "== finetune" in resumed and "--resume" in resumed and resumed.count("== finetune") == 1
    assert (runs / "single" / "trec_text" / "lora" / "result.json").is_file()
