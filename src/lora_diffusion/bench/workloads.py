"""The benchmarked workloads: a training step of any method, and generation at a fixed
(batch, length, T) with a method active, on real text (the packaged SST-2 sample)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ..backbone import DiffusionLM
from ..data.classification import SST2, encode_examples, read_labelled_tsv
from ..data.encoding import pad_collate
from ..demo import resource
from ..diffusion.sampler import SamplerConfig
from ..finetune import build_method_model
from ..generation import generate
from ..objective import DiffusionObjective
from ..training.schedule import make_optimizer

INFERENCE_METHODS = ("base", "trajectory", "lora", "lora-merged", "adapter", "prefix", "bitfit")


def _texts(n: int, per_row: int = 8) -> list[tuple[str, int]]:
    """n rows of several SST-2 sentences each (long enough to fill any bench length)."""
    rows = read_labelled_tsv(resource("sst2_train_sample.tsv"), {0, 1})
    return [(" ".join(r[0] for r in rows[i * per_row:(i + 1) * per_row]), rows[i * per_row][1]) for i in range(n)]


def train_batch(backbone: DiffusionLM, batch: int, length: int) -> dict[str, torch.Tensor]:
    """``batch`` classification rows of exactly ``length`` tokens (instruction truncated)."""
    data = encode_examples(_texts(batch), SST2, backbone.tokenizer, length)
    return pad_collate([data[i] for i in range(batch)], backbone.pad_token_id)


def generation_batch(backbone: DiffusionLM, batch: int, length: int, prompt: int) -> dict[str, torch.Tensor]:
    """``batch`` rows of ``length`` tokens: [CLS] + prompt instruction tokens, then
    ``length - prompt - 1`` response positions to generate."""
    ids = torch.full((batch, length), backbone.pad_token_id)
    for i, (text, _) in enumerate(_texts(batch)):
        toks = backbone.tokenizer(text, add_special_tokens=False)["input_ids"][:prompt]
        ids[i, 0] = backbone.tokenizer.cls_token_id
        ids[i, 1:1 + len(toks)] = torch.tensor(toks)
    positions = torch.arange(length)[None].expand(batch, length)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "instruction_mask": (positions >= 1) & (positions <= prompt),
            "generate_mask": positions > prompt}


def method_model(backbone: DiffusionLM, name: str, options: dict | None = None, seed: int = 0,
                 copy_base: bool = True) -> torch.nn.Module:
    """Method ``name`` applied to a fresh copy of the base (to the base itself with
    ``copy_base=False``); ``base``: the plain base, ``lora-merged``: weight LoRA folded into
    the weights, ``trajectory@<preset>``: a named preset of the trajectory method; ``options``:
    method -> its options."""
    own = copy.deepcopy(backbone) if copy_base else backbone
    if name == "base":
        return own.eval()
    method, preset = name.split("@", 1) if "@" in name else (name, "")
    method = "lora" if method == "lora-merged" else method
    method_options = dict((options or {}).get(method) or {})
    if preset:  # "trajectory@deep": a named preset of the method
        method_options = {**method_options, "preset": preset}
    model, _ = build_method_model(own, method, method_options, seed=seed)
    if name == "lora-merged":
        model.merge()
    return model.eval()


def split_precision(name: str) -> tuple[str, str]:
    """``"full+bf16"`` -> ``("full", "bf16")``; a name without the suffix trains in fp32."""
    return (name[: -len("+bf16")], "bf16") if name.endswith("+bf16") else (name, "fp32")


def train_step_fn(backbone: DiffusionLM, method: str, batch: dict[str, torch.Tensor],
                  options: dict | None = None, copy_base: bool = True) -> Callable[[], float]:
    """One optimiser step of ``method`` on ``batch`` (denoising loss, backward, AdamW as the
    trainer makes it: ``training.schedule.make_optimizer``). A
    ``+bf16`` suffix (``full+bf16``): the forward under bfloat16 autocast with fp32 weights and
    optimiser, as the trainer's ``mixed_precision: bf16`` runs it (Accelerate's autocast)."""
    method, precision = split_precision(method)
    model = method_model(backbone, method, options, copy_base=copy_base).train()
    objective = DiffusionObjective(backbone.diffusion)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device.type

    def step() -> float:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, _ = objective(model, batch, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step.model = model
    return step


def generate_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], num_steps: int,
                event_driven: bool = True) -> Callable[[], torch.Tensor]:
    """Generation of ``batch`` with T = ``num_steps``; the same seed every call, so every
    method sees the same reveal schedule (the same trunk workload)."""
    cfg = SamplerConfig(num_steps=num_steps, event_driven=event_driven)
    return lambda: generate(model, batch, cfg, torch.Generator().manual_seed(0))
