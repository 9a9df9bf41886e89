"""`forgetting`: a base's figures equal eval-base's; an identity adapter gives exactly the
base's; a changed adapter changes them; both instruction modes; one-line errors."""

import gzip
import json

import pytest
import torch

from lora_diffusion.cli import main
from lora_diffusion.data.corpus import CorpusError, read_corpus
from lora_diffusion.demo import resource
from lora_diffusion.finetune import build_method_model
from lora_diffusion.forgetting import instruction_text
from lora_diffusion.hub import load_base, save_base
from lora_diffusion.methods.persistence import save_method
from lora_diffusion.testing import tiny_backbone

TEMPLATE = "review: {sentence} sentiment:"
FIGS = ("nelbo_per_token", "ppl_bound", "acc@15", "acc@50", "acc@90", "tokens")


def _adapter(root, name, method, options, perturb=False):
    backbone = load_base(str(root / "base"))
    model, fingerprint = build_method_model(backbone, method, options, seed=0)
    if perturb:
        torch.manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.5 * torch.randn_like(p))
    save_method(model, root / name, fingerprint, extra={"task_format": {"task": "sst2", "template": TEMPLATE}})
    return root / name


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("forgetting")
    save_base(tiny_backbone("bert", seed=0), root / "base")
    text = gzip.decompress(resource("wikitext2_train_head.txt.gz").read_bytes()).decode().splitlines()
    (root / "wiki.txt").write_text("\n".join(text[:200]) + "\n")
    (root / "abstracts.csv").write_text('id,abstract\n0,"a first abstract\nover two lines about physics"\n'
                                        + "".join(f'{i},"{line}"\n' for i, line in enumerate(text[200:260], 1)
                                                  if line.strip() and '"' not in line))
    traj = {"ranks": [8, 4, 2]}
    return {"root": root, "identity": _adapter(root, "traj-init", "trajectory", traj),
            "lora0": _adapter(root, "lora-init", "lora", {"rank": 4, "alpha": 8}),
            "full0": _adapter(root, "full-init", "full", {}),
            "trained": _adapter(root, "traj-trained", "trajectory", traj, perturb=True)}


def _args(setup, out, *extra):
    root = setup["root"]
    return ["forgetting", "--corpus", str(root / "wiki.txt"), "--corpus", str(root / "abstracts.csv"),
            "--split", "all", "--seq-len", "16", "--max-chunks", "12", "--batch-size", "5", "--seed", "3",
            "--output-dir", str(root / out), *extra]


def _figs(path):
    return json.loads(path.read_text())


def test_base_equals_eval_base(setup, capsys):
    root = setup["root"]
    assert main(_args(setup, "f-base", "--base", str(root / "base"))) == 0
    got = _figs(root / "f-base" / "forgetting.json")
    assert main(["eval-base", "--base", str(root / "base"), "--corpus", str(root / "wiki.txt"), "--split", "all",
                 "--seq-len", "16", "--max-chunks", "12", "--batch-size", "5", "--seed", "3",
                 "--output", str(root / "eb.json")]) == 0
    want = _figs(root / "eb.json")
    assert {k: got["corpora"]["wiki.txt"][k] for k in FIGS} == {k: want[k] for k in FIGS}
    assert got["corpora"]["wiki.txt"]["chunks"] == want["chunks"] == 12
    assert got["model"]["kind"] == "base" and "git_commit" in got and got["config"]["seed"] == 3
    assert "| wiki.txt | base |" in (root / "f-base" / "forgetting.md").read_text()


@pytest.mark.parametrize("name", ["identity", "lora0", "full0"])
def test_identity_adapter_gives_the_base_figures(setup, name):
    root = setup["root"]
    out = f"f-{name}"
    assert main(_args(setup, out, "--adapter", str(setup[name]), "--with-base")) == 0
    got = _figs(root / out / "forgetting.json")
    for corpus, figs in got["corpora"].items():
        assert {k: figs[k] for k in FIGS} == {k: got["base"][corpus][k] for k in FIGS}
        assert got["change"][corpus]["ppl_bound"]["relative"] == 0.0
    base = _figs(root / "f-base" / "forgetting.json") if (root / "f-base").exists() else None
    if base:  # the same as the base measured alone
        assert {k: got["corpora"]["wiki.txt"][k] for k in FIGS} == {k: base["corpora"]["wiki.txt"][k] for k in FIGS}


def test_changed_adapter_changes_the_figures_both_instruction_modes(setup):
    root = setup["root"]
    assert main(_args(setup, "f-base2", "--base", str(root / "base"))) == 0
    assert main(_args(setup, "f-trained", "--adapter", str(setup["trained"]), "--base-result",
                      str(root / "f-base2" / "forgetting.json"))) == 0
    got = _figs(root / "f-trained" / "forgetting.json")
    assert got["instruction_text"] == "" and got["model"]["method"] == "trajectory"
    assert got["corpora"]["wiki.txt"]["nelbo_per_token"] != got["base"]["wiki.txt"]["nelbo_per_token"]
    assert got["corpora"]["wiki.txt"]["tokens"] == got["base"]["wiki.txt"]["tokens"]
    assert main(_args(setup, "f-template", "--adapter", str(setup["trained"]), "--instruction", "template",
                      "--with-base")) == 0
    tpl = _figs(root / "f-template" / "forgetting.json")
    assert tpl["instruction_text"] == "review: sentiment:" and tpl["instruction_tokens"] > 0
    assert tpl["corpora"]["wiki.txt"]["tokens"] == got["corpora"]["wiki.txt"]["tokens"]  # same scored positions
    assert tpl["corpora"]["wiki.txt"]["nelbo_per_token"] != got["corpora"]["wiki.txt"]["nelbo_per_token"]
    table = (root / "f-template" / "forgetting.md").read_text()
    assert "change vs base" in table and "`review: sentiment:`" in table
    # the identity adapter with the template prefix equals the base on the same prefixed rows
    assert main(_args(setup, "f-id-template", "--adapter", str(setup["identity"]), "--instruction", "template",
                      "--with-base")) == 0
    idt = _figs(root / "f-id-template" / "forgetting.json")
    assert idt["corpora"] == idt["base"]


def test_empty_instruction_is_the_zero_encoding(setup):
    from lora_diffusion.methods.persistence import load_method

    model = load_method(setup["trained"])
    ids = torch.randint(1000, 2000, (2, 10))
    steps = torch.tensor([10, 90])
    attn = torch.ones_like(ids)
    none = model(ids, attn, steps)
    empty = model(ids, attn, steps, instruction_mask=torch.zeros_like(ids, dtype=torch.bool))
    assert torch.equal(none, empty)


def test_instruction_text_and_csv_reader(tmp_path):
    assert instruction_text(TEMPLATE) == "review: sentiment:"
    assert instruction_text("question: {question} context: {context} answer:") == "question: context: answer:"
    f = tmp_path / "a.csv"
    f.write_text('id,abstract\n0,"two\nlines"\n1,""\n2,third\n')
    assert read_corpus(str(f), "all", "abstract") == ["two lines", "third"]
    with pytest.raises(CorpusError, match=r"a.csv:1: no column 'text'"):
        read_corpus(str(f), "all", "text")
    f.write_text('id,abstract\n0,"two"\n1,a,b\n')
    with pytest.raises(CorpusError, match=r"a.csv:3: 3 fields"):
        read_corpus(str(f), "all", "abstract")


def test_errors_are_one_line(setup, capsys):
    root = setup["root"]
    if not (root / "f-base" / "forgetting.json").exists():
        test_base_equals_eval_base(setup, capsys)
    cases = [
        (_args(setup, "f-base"), "give --adapter DIR or --base DIR"),
        (_args(setup, "f-base", "--base", str(root / "base")), "pass --overwrite"),
        (_args(setup, "f-x", "--base", str(root / "base"), "--instruction", "template"), "--template TEXT"),
        (_args(setup, "f-x", "--base", str(root / "base"), "--with-base"), "--with-base needs --adapter"),
        (["forgetting", "--base", str(root / "base"), "--corpus", str(root / "nope.txt"), "--output-dir",
          str(root / "f-y")], "corpus file not found"),
        (_args(setup, "f-z", "--adapter", str(setup["trained"]), "--base-result",
               str(root / "f-base" / "forgetting.json"), "--seed", "4"), "config.seed"),
    ]
    other = _figs(root / "f-base" / "forgetting.json")  # base figures recorded on other weights
    other["base_weights"] = {"path": "elsewhere", "sha256": "0" * 64}
    (root / "other-base.json").write_text(json.dumps(other))
    cases.append((_args(setup, "f-w", "--adapter", str(setup["trained"]), "--base", str(root / "base"),
                        "--base-result", str(root / "other-base.json")), "measured on base weights 000000000000"))
    for args, needle in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert needle in err.splitlines()[-1] and "Traceback" not in err, err
    assert main(_args(setup, "f-base", "--base", str(root / "base"), "--overwrite")) == 0


def test_combined_table_over_results(setup, capsys):
    root = setup["root"]
    if not (root / "f-trained" / "forgetting.json").exists():
        test_changed_adapter_changes_the_figures_both_instruction_modes(setup)
    if not (root / "f-lora0" / "forgetting.json").exists():
        test_identity_adapter_gives_the_base_figures(setup, "lora0")
    out = root / "table.md"
    assert main(["forgetting-table", "--result", str(root / "f-trained"), "--result", str(root / "f-lora0"),
                 "--output", str(out), "--title", "after sst2"]) == 0
    text = out.read_text()
    assert "| wiki.txt | trajectory (sst2) | empty |" in text and "| wiki.txt | lora (sst2) | empty |" in text
    assert text.count("| wiki.txt | base |") == 1  # the same base figures are shown once
    assert "+0.0% |" in text
    # base figures equal as shown (a re-measurement differing in the 10th digit) are one row
    again = _figs(root / "f-lora0" / "forgetting.json")
    for figs in again["base"].values():
        figs["nelbo_per_token"] += 1e-10
    (root / "f-again").mkdir(exist_ok=True)
    (root / "f-again" / "forgetting.json").write_text(json.dumps(again))
    assert main(["forgetting-table", "--result", str(root / "f-trained"), "--result", str(root / "f-lora0"),
                 "--result", str(root / "f-again"), "--output", str(root / "t3.md")]) == 0
    assert (root / "t3.md").read_text().count("| wiki.txt | base |") == 1
    assert main(["forgetting-table", "--result", str(root / "f-base"), "--output", str(root / "t2.md")]) == 2
    assert "holds no base figures" in capsys.readouterr().err
