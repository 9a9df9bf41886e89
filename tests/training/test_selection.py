"""Model selection on validation and early stopping (training/selection.py): the run stops after
``patience`` evaluations without a gain, hands on the best step's tensors, and a resumed run
selects and stops exactly as an uninterrupted one."""

import json

import pytest
import torch

from lora_diffusion.config import ConfigError, TrainConfig
from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.finetune import FinetuneConfig, build_method_model
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import packaged_tokenizer, tiny_backbone
from lora_diffusion.training.trainer import Trainer, TrainingInterrupted

SCORES = [0.50, 0.70, 0.60, 0.65, 0.60, 0.90]  # evaluation k (step k): best at step 2, then 2 without gain
OPTIONS = {"ranks": [4, 4, 2], "time_dim": 8, "cond_dim": 8}
TEXTS = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]


def _setup(out, patience=2, interrupt_at=0, **cfg_kw):
    model = build_method_model(tiny_backbone("bert", seed=0), "trajectory", OPTIONS, seed=0)[0]
    rows = list(encode_examples([(TEXTS[i % 8], i % 2) for i in range(16)], SST2, packaged_tokenizer()))
    seen = {}

    def evaluate(m):
        step = len(seen) + 1 + (interrupt_at if evaluate.resumed else 0)
        if interrupt_at and not evaluate.resumed and step == interrupt_at + 1:
            raise KeyboardInterrupt
        seen[step] = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
        return {"accuracy": SCORES[step - 1], "other": 0.0}

    evaluate.resumed = False
    cfg = TrainConfig(max_steps=6, lr=1e-2, warmup_steps=0, batch_size=4, micro_batch_size=4, log_every=1,
                      eval_every=1, save_every=1, seed=0, select_metric="accuracy", early_stopping_patience=patience,
                      **cfg_kw)
    trainer = Trainer(model, DiffusionObjective(model.backbone.diffusion), rows, cfg, out, collate=pad_collate,
                      evaluate=evaluate, progress=False)
    return trainer, model, seen, evaluate


def _trained(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_stops_after_patience_and_hands_on_the_best_step(tmp_path):
    trainer, model, seen, _ = _setup(tmp_path)
    summary = trainer.fit()
    assert sorted(seen) == [1, 2, 3, 4]  # evaluations 3 and 4 bring no gain: stop at step 4
    assert summary["steps"] == 4
    assert summary["selection"] == {"select_metric": "accuracy", "selected_step": 2, "selected_value": 0.7,
                                    "early_stopped_at": 4, "patience": 2}
    final = _trained(model)
    assert all(torch.equal(final[n], seen[2][n]) for n in final)
    assert not all(torch.equal(final[n], seen[4][n]) for n in final)  # step 4 differed: the best was put back
    curve = [h["eval/accuracy"] for h in json.loads((tmp_path / "training_history.json").read_text())
             if "eval/accuracy" in h]
    assert curve == SCORES[:4]  # the learning curve is kept


def test_never_stops_before_min_steps(tmp_path):
    trainer, model, seen, _ = _setup(tmp_path, min_steps=5)
    summary = trainer.fit()
    assert sorted(seen) == [1, 2, 3, 4, 5] and summary["selection"]["early_stopped_at"] == 5
    assert summary["selection"]["selected_step"] == 2


def test_without_patience_runs_to_the_end_and_selects(tmp_path):
    trainer, model, seen, _ = _setup(tmp_path, patience=0)
    summary = trainer.fit()
    assert summary["steps"] == 6 and summary["selection"]["selected_step"] == 6
    assert summary["selection"]["early_stopped_at"] is None


def test_resumed_run_selects_and_stops_as_an_uninterrupted_one(tmp_path):
    straight, model_a, seen_a, _ = _setup(tmp_path / "a")
    straight.fit()
    first, _, _, _ = _setup(tmp_path / "b", interrupt_at=2)
    with pytest.raises(TrainingInterrupted):
        first.fit()  # interrupted in the evaluation of step 3: resumes from the checkpoint of step 2
    again, model_b, seen_b, evaluate = _setup(tmp_path / "b", interrupt_at=2)
    evaluate.resumed = True
    summary = again.fit(resume=True)
    assert sorted(seen_b) == [3, 4] and summary["steps"] == 4
    assert summary["selection"]["selected_step"] == 2
    a, b = _trained(model_a), _trained(model_b)
    assert all(torch.equal(a[n], b[n]) for n in a)
    done, model_c, seen_c, evaluate = _setup(tmp_path / "b", interrupt_at=4)
    evaluate.resumed = True
    assert done.fit(resume=True)["steps"] == 4 and not seen_c  # a stopped run resumes as finished
    assert all(torch.equal(a[n], p) for n, p in _trained(model_c).items())


def test_damaged_best_state_is_refused(tmp_path):
    trainer, model, _, _ = _setup(tmp_path)
    trainer.fit()
    with open(tmp_path / "best" / "trainable.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\0")
    with pytest.raises(Exception, match="trainable.safetensors"):
        trainer.selector.load_best(model)


def test_bad_selection_settings_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="early_stopping_patience"):
        TrainConfig(early_stopping_patience=3)
    with pytest.raises(ConfigError, match="select_metric"):
        TrainConfig(select_metric="accuracy")
    with pytest.raises(ConfigError, match="train.select_metric"):
        FinetuneConfig(train=TrainConfig(select_metric="accuracy", eval_every=10))
    trainer, _, _, _ = _setup(tmp_path, patience=0)
    trainer.selector.metric = "f1"
    with pytest.raises(ConfigError, match="train.select_metric: 'f1' is not among"):
        trainer.fit()


def test_finetune_selects_on_validation_carved_from_train(tmp_path):
    from lora_diffusion.config import from_dict
    from lora_diffusion.finetune import run_finetune
    from lora_diffusion.hub import save_base

    save_base(tiny_backbone("bert", hidden=32), tmp_path / "base")
    rows = [{"prompt": f"{w} is", "response": ["yes", "no"][i % 2]} for i, w in enumerate(TEXTS * 4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = from_dict(FinetuneConfig, {
        "base": str(tmp_path / "base"), "method": "trajectory", "method_options": OPTIONS,
        "data_file": str(tmp_path / "train.jsonl"), "validation_rows": 8, "output_dir": str(tmp_path / "run"),
        "train": {"max_steps": 12, "lr": 1e-2, "warmup_steps": 0, "batch_size": 8, "micro_batch_size": 8,
                  "eval_every": 3, "save_every": 3, "select_metric": "primary", "early_stopping_patience": 2}})
    result = run_finetune(cfg, progress=False)
    selection = result["summary"]["selection"]
    assert selection["select_metric"] == "primary" and selection["selected_step"] in (3, 6, 9, 12)
    history = json.loads((tmp_path / "run" / "training_history.json").read_text())
    evals = [h for h in history if "eval/primary" in h]
    assert evals and {"eval/denoising_accuracy", "eval/accuracy"} <= evals[0].keys()
    assert result["validation"]["rows"] == 8 and result["train_rows"] == 24
    assert max(h["eval/primary"] for h in evals) == selection["selected_value"]



def test_resumed_run_reports_the_training_time_of_every_segment(tmp_path):
    from lora_diffusion.training.checkpoint import checkpoint_timing, list_checkpoints

    first, _, _, _ = _setup(tmp_path, interrupt_at=2)
    with pytest.raises(TrainingInterrupted):
        first.fit()  # steps 1-2 kept (checkpoint of step 2), step 3 lost
    before = checkpoint_timing(list_checkpoints(tmp_path / "checkpoints")[-1])
    assert before["timed_steps"] == 1 and before["wall_s"] > 0  # step 2 (step 1 is the warm-up)
    again, _, _, evaluate = _setup(tmp_path, interrupt_at=2)
    evaluate.resumed = True
    summary = again.fit(resume=True)  # steps 3-4, then the early stop
    assert summary["wall_time_s"] >= before["wall_s"] + summary["wall_time_this_run_s"] - 1e-6
    last = checkpoint_timing(list_checkpoints(tmp_path / "checkpoints")[-1])
    assert last["timed_steps"] == 2 and last["wall_s"] > before["wall_s"]
    assert summary["mean_time_per_step_s"] == pytest.approx(last["step_time_sum_s"] / 2)
    assert len(last["step_times_s"]) == 2 and last["step_times_s"][0] == before["step_times_s"][0]
    assert summary["median_time_per_step_s"] == pytest.approx(sum(last["step_times_s"]) / 2)  # median of two
    done, _, _, evaluate = _setup(tmp_path, interrupt_at=4)
    evaluate.resumed = True
    finished = done.fit(resume=True)  # nothing left to train: the time is still the run's, not ~0
    assert finished["steps_this_run"] == 0 and finished["wall_time_s"] >= last["wall_s"]
    assert finished["mean_time_per_step_s"] == summary["mean_time_per_step_s"]
    assert finished["median_time_per_step_s"] == summary["median_time_per_step_s"]
