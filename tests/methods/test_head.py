"""Classification head: hand-computed accuracy and loss, accounting, persistence, objective."""

import math

import pytest
import torch

from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.diffusion.sampler import SamplerConfig
from lora_diffusion.finetune import build_method_model
from lora_diffusion.generation import generate, generation_accuracy
from lora_diffusion.methods.accounting import parameter_accounting
from lora_diffusion.methods.head import anchor_mask, attach_head, head_loss
from lora_diffusion.methods.persistence import load_method, save_method
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import tiny_backbone


class FilmDetector(torch.nn.Module):
    """Predicts "positive" everywhere; its hidden state is +1 in dim 0 when the row mentions
    "film", else -1. Records whether every position it was asked about was still masked."""

    def __init__(self, tokenizer):
        super().__init__()
        self.backbone = tiny_backbone("bert", seed=0)
        self.film = tokenizer.convert_tokens_to_ids("film")
        self.positive = tokenizer.convert_tokens_to_ids("positive")
        self.asked_masked = []

    def forward(self, input_ids, attention_mask, steps, select=None, instruction_mask=None, return_hidden=False):
        self.asked_masked.append(bool((input_ids[select] == self.backbone.mask_token_id).all()))
        logits = torch.zeros(int(select.sum()), self.backbone.vocab_size)
        logits[:, self.positive] = 1.0
        hidden = torch.zeros(int(select.sum()), self.backbone.hidden_size)
        has_film = (input_ids == self.film).any(1)
        hidden[:, 0] = torch.where(has_film, 1.0, -1.0)[select.nonzero()[:, 0]]
        return (logits, hidden) if return_hidden else logits


def _data(tokenizer):
    rows = [("great film", 1), ("awful film", 0), ("lovely", 1), ("dull and long film", 0), ("fine", 1)]
    return encode_examples(rows, SST2, tokenizer)


def test_head_accuracy_by_hand_from_the_decoding_step(tokenizer):
    model = FilmDetector(tokenizer)
    attach_head(model, 2)
    with torch.no_grad():  # label 0 when "film" is mentioned, else label 1
        model.cls_head.weight.zero_()
        model.cls_head.bias.zero_()
        model.cls_head.weight[0, 0], model.cls_head.weight[1, 0] = 1.0, -1.0
    result = generation_accuracy(model, _data(tokenizer), batch_size=2)
    assert result["accuracy"] == 3 / 5  # "positive" everywhere
    assert result["head_accuracy"] == 4 / 5  # only "great film" is wrong
    assert model.asked_masked and all(model.asked_masked)  # never read a decoded token


def test_head_loss_by_hand_only_masked_anchors():
    head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
        head.bias.zero_()
    gen = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=torch.bool)
    select = torch.tensor([[0, 0, 1, 0], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=torch.bool)  # row 0: anchor kept
    hidden = torch.tensor([[9.0, 9.0], [2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0, 0])
    loss, rows = head_loss(head, hidden, select, gen, labels)
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    assert rows == 2 and loss.item() == pytest.approx(expected, rel=1e-6)
    assert anchor_mask(gen).sum(1).tolist() == [1, 1, 1]


@pytest.mark.parametrize("method", ["trajectory", "full", "bitfit"])
def test_head_counted_saved_and_reloaded(tmp_path, tokenizer, method):
    base = tiny_backbone("bert", seed=0)
    model, fp = build_method_model(base, method, {"ranks": [8, 4, 2]} if method == "trajectory" else {},
                                   seed=0, num_labels=3)
    with torch.no_grad():
        model.cls_head.weight.normal_()
    acc = parameter_accounting(model)
    assert acc["groups"]["classification head"]["parameters"] == 3 * base.hidden_size + 3
    save_method(model, tmp_path / "saved", fp)
    again = load_method(tmp_path / "saved", base if method != "full" else None)
    assert torch.equal(again.cls_head.weight, model.cls_head.weight)
    assert again.cls_head_weight == model.cls_head_weight


def test_recording_anchor_changes_no_sample(tokenizer):
    base = tiny_backbone("bert", seed=0)
    model, _ = build_method_model(base, "trajectory", {"ranks": [8, 4, 2]}, seed=0, num_labels=2)
    batch = pad_collate([_data(tokenizer)[i] for i in range(5)], base.pad_token_id)
    cfg = SamplerConfig(num_steps=20)
    plain = generate(model, batch, cfg, torch.Generator().manual_seed(3))
    ids, hidden = generate(model, batch, cfg, torch.Generator().manual_seed(3), record_anchor=True)
    assert torch.equal(plain, ids) and hidden.shape == (5, base.hidden_size) and hidden.abs().sum(1).gt(0).all()


def test_objective_adds_weighted_head_loss(tokenizer):
    base = tiny_backbone("bert", seed=0)
    model, _ = build_method_model(base, "trajectory", {"ranks": [8, 4, 2]}, seed=0, num_labels=2, head_weight=0.5)
    batch = pad_collate([_data(tokenizer)[i] for i in range(5)], base.pad_token_id)
    objective = DiffusionObjective(base.diffusion)
    loss, logs = objective(model, batch, torch.Generator().manual_seed(0))
    regs = sum(w * v for v, w in model.regularization().values())
    assert logs["head_rows"] >= 1
    assert loss.item() == pytest.approx(logs["loss_denoise"] + 0.5 * logs["loss_head"] + float(regs.detach()), rel=1e-5)
    loss.backward()
    assert model.cls_head.weight.grad.abs().sum() > 0
    unlabelled = {k: v for k, v in batch.items() if k != "label"}
    _, logs = objective(model, unlabelled, torch.Generator().manual_seed(0))
    assert "loss_head" not in logs
