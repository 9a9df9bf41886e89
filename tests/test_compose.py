"""`lora-diffusion compose`: composed adapters round trip through save / load / evaluate / generate,
and peft merges through our command equal peft's own ``add_weighted_adapter``."""

import json

import pytest
import torch

from lora_diffusion.api import load_pipeline
from lora_diffusion.cli import main
from lora_diffusion.evaluate import EvaluateConfig, run_evaluate
from lora_diffusion.finetune import build_method_model
from lora_diffusion.hub import load_base, save_base
from lora_diffusion.methods.persistence import load_method, save_method
from lora_diffusion.testing import tiny_backbone

SMALL = {"ranks": [8, 4, 2], "time_dim": 16, "cond_dim": 12}


def _inputs():
    ids = torch.randint(1000, 3000, (3, 10), generator=torch.Generator().manual_seed(0))
    instr = torch.zeros(3, 10, dtype=torch.bool)
    instr[:, 1:5] = True
    sel = torch.zeros(3, 10, dtype=torch.bool)
    sel[:, 6:9] = True
    return ids, torch.ones(3, 10, dtype=torch.long), torch.tensor([10, 50, 90]), sel, instr


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny base and, on it, two trajectory, two weight-LoRA and two bottleneck adapters."""
    tmp = tmp_path_factory.mktemp("compose")
    save_base(tiny_backbone("bert", seed=0), tmp / "base")
    dirs = {}
    for method, options in (("trajectory", SMALL), ("lora", {"rank": 4, "alpha": 8.0}), ("adapter", {"bottleneck": 8})):
        for k in range(2):
            model, fp = build_method_model(load_base(str(tmp / "base")), method, options, seed=k)
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad:
                        p.add_(0.1 * torch.randn_like(p))
            dirs[f"{method}{k}"] = save_method(model, tmp / f"{method}{k}", fp)
    return tmp, dirs


def _compose(tmp, dirs, names, out, *flags):
    spec = ",".join(f"t{k}={dirs[n]}" for k, n in enumerate(names))
    return main(["compose", "--adapters", spec, "--base", str(tmp / "base"), "--output", str(tmp / out), *flags])


def test_composed_adapter_round_trip_save_load_evaluate_generate(saved, capsys):
    tmp, dirs = saved
    assert _compose(tmp, dirs, ["trajectory0", "trajectory1"], "uniform") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["mode"] == "uniform" and record["method"] == "trajectory-composed"
    base = load_base(str(tmp / "base"))
    from lora_diffusion.methods.compose import compose_adapters

    singles = [load_method(dirs[f"trajectory{k}"], base) for k in range(2)]
    direct = compose_adapters(base, {"t0": singles[0].adapter, "t1": singles[1].adapter}, "uniform")
    loaded = load_method(tmp / "uniform", str(tmp / "base"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(*_inputs()), direct(*_inputs()), rtol=0, atol=0)
    pipe = load_pipeline(tmp / "uniform", str(tmp / "base"))
    data = tmp / "rows.jsonl"
    data.write_text('{"prompt": "review: great fun sentiment:", "response": "positive"}\n'
                    '{"prompt": "question: where is paris? answer type:", "response": "location"}\n')
    results = []
    for k, adapter in enumerate((tmp / "uniform", tmp / "uniform")):
        cfg = EvaluateConfig(adapter=str(adapter), base=str(tmp / "base"), data_file=str(data),
                             output_dir=str(tmp / f"eval{k}"))
        results.append(run_evaluate(cfg, pipe if k else None))
    for key in ("metrics", "examples"):
        assert results[0][key] == results[1][key]
    preds = [(tmp / f"eval{k}" / "predictions.jsonl").read_text() for k in range(2)]
    assert preds[0] == preds[1]
    assert main(["generate", "--adapter", str(tmp / "uniform"), "--base", str(tmp / "base"), "--prompt", "review: ok",
                 "--response-length", "4", "--steps", "4"]) == 0


def test_compose_weights_router_and_refusals(saved, capsys):
    tmp, dirs = saved
    assert _compose(tmp, dirs, ["trajectory0", "trajectory1"], "w", "--weights", "0.25,0.75") == 0
    meta = json.loads((tmp / "w" / "adapter_config.json").read_text())
    assert meta["config"]["mode"] == "weights" and meta["config"]["weights"] == [0.25, 0.75]
    capsys.readouterr()
    assert _compose(tmp, dirs, ["trajectory0", "trajectory1"], "w", "--weights", "1,0") == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert _compose(tmp, dirs, ["trajectory0", "trajectory1"], "bad", "--weights", "1") == 2
    assert "need one per adapter (2)" in capsys.readouterr().err
    assert _compose(tmp, dirs, ["lora0", "lora1"], "ties", "--mode", "merge-ties") == 2
    assert "needs --density" in capsys.readouterr().err
    assert _compose(tmp, dirs, ["trajectory0", "trajectory1"], "avg", "--mode", "merge-ties", "--density", "0.5") == 2
    assert "peft combinations merge weight LoRA adapters" in capsys.readouterr().err
    assert _compose(tmp, dirs, ["trajectory0", "lora0"], "mixed") == 2
    assert "superposition needs trajectory adapters" in capsys.readouterr().err
    assert _compose(tmp, dirs, ["trajectory0", "trajectory1"], "r", "--router", str(tmp / "w")) == 2
    assert "holds no router" in capsys.readouterr().err


def test_average_merge_of_trajectory_and_bottleneck_adapters(saved, capsys):
    tmp, dirs = saved
    for method in ("trajectory", "adapter"):
        assert _compose(tmp, dirs, [f"{method}0", f"{method}1"], f"avg-{method}", "--mode", "merge-average",
                        "--weights", "0.3,0.7") == 0
        merged = load_method(tmp / f"avg-{method}", str(tmp / "base"))
        assert merged.method == method
        parts = [load_method(dirs[f"{method}{k}"], str(tmp / "base")) for k in range(2)]
        want = {n: 0.3 * p.detach() for n, p in parts[0].named_parameters() if p.requires_grad}
        for n, p in parts[1].named_parameters():
            if p.requires_grad:
                want[n] = want[n] + 0.7 * p.detach()
        got = {n: p.detach() for n, p in merged.named_parameters() if p.requires_grad}
        assert set(got) == set(want)
        for n in got:
            torch.testing.assert_close(got[n], want[n])
    capsys.readouterr()


@pytest.mark.parametrize("combination,extra", [("linear", []), ("cat", []), ("ties", ["--density", "0.5"]),
                                               ("dare_linear", ["--density", "0.6"]),
                                               ("dare_ties", ["--density", "0.6"])])
def test_peft_merges_equal_peft_add_weighted_adapter(saved, capsys, combination, extra):
    from peft import PeftModel

    tmp, dirs = saved
    out = f"lora-{combination}"
    assert _compose(tmp, dirs, ["lora0", "lora1"], out, "--mode", f"merge-{combination}", "--weights", "0.6,0.9",
                    "--seed", "3", *extra) == 0
    capsys.readouterr()
    ours = load_method(tmp / out, str(tmp / "base"))
    assert ours.method == "lora"
    reference = load_base(str(tmp / "base"))
    peft_model = PeftModel.from_pretrained(reference.mlm, str(dirs["lora0"] / "peft"), adapter_name="t0")
    peft_model.load_adapter(str(dirs["lora1"] / "peft"), adapter_name="t1")
    torch.manual_seed(3)
    kwargs = {"density": float(extra[1])} if extra else {}
    peft_model.add_weighted_adapter(["t0", "t1"], [0.6, 0.9], "composed", combination_type=combination, **kwargs)
    peft_model.set_adapter("composed")
    ids, attn, steps, sel, _ = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, attn, steps, select=sel), reference(ids, attn, steps, select=sel),
                                   rtol=1e-5, atol=1e-5)
        assert not torch.allclose(ours(ids, attn, steps, select=sel), load_base(str(tmp / "base"))(ids, attn, steps,
                                                                                                   select=sel))


def test_multitask_finetune_with_router_then_router_alone_then_compose(saved, capsys):
    tmp, dirs = saved
    files = {}
    for name, template, words in (("reviews", "review: {} sentiment:", ["positive", "negative"]),
                                  ("questions", "question: where is the {} ? answer type:", ["location", "human"])):
        lines = [json.dumps({"prompt": template.format(w), "response": words[i % 2]})
                 for i, w in enumerate(["red", "blue", "green", "old", "new", "big", "small", "tall"])]
        (tmp / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        files[name] = str(tmp / f"{name}.jsonl")
    common = ["--base", str(tmp / "base"), "--quiet", "--steps", "3", "--set", "train.batch_size=8",
              "--set", "train.micro_batch_size=8", "--set", "train.warmup_steps=0", "--set", "train.save_every=0",
              "--set", "method_options.adapter.ranks=[4,4,2]", "--set", "method_options.adapter.time_dim=8",
              "--set", "method_options.adapter.cond_dim=8", "--set", "eval_rows=4", "--set", "sampling.num_steps=4",
              "--data-files", ",".join(files.values()), "--eval-files", ",".join(files.values())]
    assert main(["finetune", *common, "--router", "--output-dir", str(tmp / "joint")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["method"] == "trajectory-composed" and printed["tasks"] == ["reviews", "questions"]
    assert printed["modes"] == ["router", "uniform", "oracle"] and set(printed["router_accuracy"]) == set(files)
    result = json.loads((tmp / "joint" / "result.json").read_text())
    assert result["summary"]["accounting"]["groups"]["router (Eq. 21)"]["parameters"] == 32 * 512 + 512 + 512 * 2 + 2
    history = json.loads((tmp / "joint" / "training_history.json").read_text())
    assert "reg_router" in json.dumps(history)
    joint = load_method(tmp / "joint" / "adapter", str(tmp / "base"))
    assert joint.method == "trajectory-composed" and joint.router is not None
    # router alone over frozen adapters started from the joint run's modules (saved as trajectory adapters)
    for name in files:
        single, fp = build_method_model(load_base(str(tmp / "base")), "trajectory",
                                        {"ranks": [4, 4, 2], "time_dim": 8, "cond_dim": 8})
        single.adapter.load_state_dict(joint.adapters[name].state_dict())
        save_method(single, tmp / f"single-{name}", fp)
    init = ",".join(f"{n}=" + str(tmp / f"single-{n}") for n in files)
    assert main(["finetune", *common, "--router", "--freeze-adapters", "--init-adapters", init,
                 "--output-dir", str(tmp / "router")]) == 0
    capsys.readouterr()
    routed = load_method(tmp / "router" / "adapter", str(tmp / "base"))
    for name in files:
        for a, b in zip(routed.adapters[name].parameters(), joint.adapters[name].parameters()):
            assert torch.equal(a, b)  # frozen: exactly the initial adapters
    acc = json.loads((tmp / "router" / "result.json").read_text())["summary"]["accounting"]
    assert set(acc["groups"]) == {"router (Eq. 21)"}
    spec = ",".join(f"{n}=" + str(tmp / f"single-{n}") for n in files)
    assert main(["compose", "--adapters", spec, "--router", str(tmp / "router" / "adapter"), "--base",
                 str(tmp / "base"), "--output", str(tmp / "routed")]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "router"
    assert load_method(tmp / "routed", str(tmp / "base")).cfg.mode == "router"
    # the jointly trained adapter served in another mode: its tasks and router are kept
    assert main(["compose", "--adapters", f"joint={tmp / 'joint' / 'adapter'}", "--weights", "1,0", "--base",
                 str(tmp / "base"), "--output", str(tmp / "joint-oracle-reviews")]) == 0
    capsys.readouterr()
    again = load_method(tmp / "joint-oracle-reviews", str(tmp / "base"))
    assert again.tasks == ["reviews", "questions"] and again.router is not None and again.cfg.weights == [1.0, 0.0]
    for a, b in zip(again.parameters(), joint.parameters()):
        assert torch.equal(a, b)


def test_single_task_and_composed_adapters_evaluate_on_a_composite_task(saved, shared_data, capsys):
    from lora_diffusion.data.sources import resolve_data
    from lora_diffusion.finetune import FinetuneConfig, task_format

    tmp, dirs = saved
    base = load_base(str(tmp / "base"))
    cfg = FinetuneConfig(task="sst2", data_root=str(shared_data))
    prepared = resolve_data(task="sst2", data_dir="", data_root=str(shared_data), data_file="", eval_file="",
                            eval_split="", file_cfg=cfg.data, metric="", fmt=cfg.response, need_train=False)
    model = load_method(dirs["trajectory0"], base)
    save_method(model, tmp / "sst2-like", extra={"task_format": task_format(prepared, cfg)})
    assert json.loads((tmp / "sst2-like" / "adapter_config.json").read_text())["task_format"]["label_words"]
    spec = f"sst2={tmp / 'sst2-like'},trec={dirs['trajectory1']}"
    assert main(["compose", "--adapters", spec, "--base", str(tmp / "base"), "--output", str(tmp / "st")]) == 0
    for adapter in ("sst2-like", "st"):
        out = tmp / f"eval-composite-{adapter}"
        assert main(["evaluate", "--adapter", str(tmp / adapter), "--base", str(tmp / "base"), "--task", "sst2_trec",
                     "--data-root", str(shared_data), "--eval-rows", "4", "--steps", "4",
                     "--output-dir", str(out)]) == 0, capsys.readouterr().err
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["examples"] == 4 and metrics["rows"]["response_budget"] == 4
        assert metrics["data"]["name"] == "sst2_trec" and "accuracy" in metrics["metrics"]
    capsys.readouterr()


def test_serving_cost_counts_one_trunk_pass_per_step_composed_and_m_separate():
    from lora_diffusion.bench.composition import serving_cost

    out = serving_cost(tiny_backbone("bert", seed=0), counts=(2, 3), batch=2, length=16, prompt=4, num_steps=4,
                       rounds=1, options=SMALL)
    for m in (2, 3):
        passes = out["results"][str(m)]["trunk_passes"]
        assert passes["separate"]["calls"] == m * passes["composed"]["calls"] > 0
        assert out["results"][str(m)]["ratio_separate_over_composed"] > 0
