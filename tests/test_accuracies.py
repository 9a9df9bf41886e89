"""Accuracies on a model with fixed predictions, against hand-computed values."""

import torch

from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.generation import denoising_accuracy, generation_accuracy
from lora_diffusion.testing import tiny_backbone


class FixedPredictor(torch.nn.Module):
    """Predicts `token` at every selected position, whatever the input; records what it scored."""

    def __init__(self, token: int):
        super().__init__()
        self.backbone = tiny_backbone("bert", seed=0)
        self.token, self.scored = token, []

    def forward(self, input_ids, attention_mask, steps, select=None, instruction_mask=None):
        self.scored.append(select.nonzero())
        logits = torch.zeros(int(select.sum()), self.backbone.vocab_size)
        logits[:, self.token] = 1.0
        return logits


def _data(tokenizer):
    rows = [("great film", 1), ("awful film", 0), ("lovely", 1), ("dull and long film", 0), ("fine", 1)]
    return encode_examples(rows, SST2, tokenizer)


def test_generation_accuracy_exact_match_by_hand(tokenizer):
    data = _data(tokenizer)
    positive = data.label_token_ids[1]
    result = generation_accuracy(FixedPredictor(positive), data, batch_size=2)
    assert result["accuracy"] == 3 / 5 and result["valid_label_rate"] == 1.0
    wrong = generation_accuracy(FixedPredictor(tokenizer.convert_tokens_to_ids("film")), data)
    assert wrong["accuracy"] == 0.0 and wrong["valid_label_rate"] == 0.0  # no fallback label


def test_denoising_accuracy_scores_only_response_tokens(tokenizer):
    data = _data(tokenizer)
    model = FixedPredictor(data.label_token_ids[0])
    result = denoising_accuracy(model, data, batch_size=5, seed=0)
    (where,) = model.scored  # one batch of 5 rows
    for row, pos in where.tolist():  # only response positions: never specials or padding
        assert bool(data[row]["generate_mask"][pos])
    labels = [int(data[row]["label"]) for row, _ in where.tolist()]
    assert result["masked_tokens"] == len(labels) >= 1
    assert result["accuracy"] == labels.count(0) / len(labels)  # predicting "negative" everywhere
