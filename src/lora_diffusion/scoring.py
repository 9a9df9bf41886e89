"""Generated responses -> task metrics and a per-example predictions file.

One reverse run per data set (``generation.reverse_run``): the response region of every row
is generated from all-[MASK] with the method active at every step, cut at the first end
token and decoded. The task's metric (``lora_diffusion.metrics``) is computed against
  - ``metrics``: the references as the model's tokenizer writes them (encode -> decode; an
    uncased BERT vocabulary lowercases and strips accents, so a raw German reference holds
    characters the model can never emit), the headline figure, and
  - ``metrics_raw``: the references exactly as the data set gives them.
Classification tasks also report token-exact generation accuracy, the valid-label rate and
the classification head's accuracy from the same run (``generation.generation_accuracy``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .backbone import unwrap_backbone
from .data.encoding import EncodedExamples, decode_responses
from .diffusion.sampler import SamplerConfig
from .generation import generation_accuracy, reverse_run
from .metrics import compute_metrics, primary_metric
from .utils.io import atomic_write_text


def tokenizer_view(tokenizer, text: str) -> str:
    """``text`` as this tokenizer can write it: encode, then decode (specials dropped)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()


def evaluate_encoded(model: torch.nn.Module, data: EncodedExamples, metric: str, cfg: SamplerConfig | None = None,
                     batch_size: int = 32, seed: int = 0, resume=None, section: str = "reverse_run") -> dict[str, Any]:
    """Metrics of ``model`` on ``data`` (rows and their examples) and the predictions.
    ``resume``, ``section``: finished batches kept and reused (``generation.reverse_run``).

    Returns {"metric", "primary", "metrics", "metrics_raw", "examples", "seconds_per_sample",
    "predictions": [{"id", "prompt", "prediction", "references"[, "label", "correct"]}],
    and for classification "accuracy", "valid_label_rate"[, "head_accuracy"]}."""
    tokenizer = unwrap_backbone(model).tokenizer
    run = reverse_run(model, data, cfg, batch_size, seed, resume=resume, section=section)
    regions = torch.tensor(run.regions) if run.regions and len({len(r) for r in run.regions}) == 1 else None
    if regions is not None:
        texts = decode_responses(tokenizer, regions, torch.ones_like(regions, dtype=torch.bool), data.end_id)
    else:  # regions of different lengths (never for one task's rows; kept general)
        texts = [decode_responses(tokenizer, torch.tensor([r]), torch.ones(1, len(r), dtype=torch.bool),
                                  data.end_id)[0] for r in run.regions]
    refs_raw = [ex.answers for ex in data.examples]
    refs_view = [tuple(tokenizer_view(tokenizer, r) for r in refs) for refs in refs_raw]
    out: dict[str, Any] = {
        "metric": metric, "primary": primary_metric(metric),
        "metrics": compute_metrics(metric, texts, refs_view),
        "metrics_raw": compute_metrics(metric, texts, refs_raw),
        "examples": len(texts), "seconds_per_sample": run.seconds / max(len(texts), 1),
    }
    if data.label_token_ids:
        out.update({k: v for k, v in generation_accuracy(model, data, run=run).items() if k != "examples"})
    predictions = []
    for i, (ex, text) in enumerate(zip(data.examples, texts)):
        row = {"id": ex.id or str(i), "prompt": ex.prompt, "prediction": text, "references": list(ex.answers)}
        if ex.label is not None:
            row["label"] = ex.label
            if run.head_predictions is not None:
                row["head_prediction"] = run.head_predictions[i]
        predictions.append(row)
    out["predictions"] = predictions
    return out


def write_predictions(path: str | Path, predictions: list[dict[str, Any]]) -> Path:
    """One JSON object per line, written atomically."""
    import json

    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    return atomic_write_text(path, text)


def headline(result: dict[str, Any]) -> float:
    """The task's primary figure (percent) from an ``evaluate_encoded`` result."""
    return float(result["metrics"][result["primary"]])
