"""Parameter accounting shared by every method: trainable parameters by component, percent of
the base, and bytes on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..backbone import unwrap_backbone

PREFIX_GROUPS = (
    ("adapter.time_embedding.", "timestep embedding"),
    ("adapter.encoder.", "instruction encoder"),
    ("cls_head.", "classification head"),
    ("router.", "router (Eq. 21)"),
    ("adapter.mix.", "layer mix"),
    ("adapter.deep.", "deep layers (banks and FiLM)"),
    ("adapter.side.", "side attention network"),
)


def _group_of(name: str) -> str:
    """Accounting group of a parameter name (``adapter.banks.<phase>.<leaf>`` for banks; a
    composed model's ``adapters.<task>.`` counts as ``adapter.``)."""
    if name.startswith("adapters."):
        name = "adapter." + name.split(".", 2)[2]
    if name.startswith("adapter.banks."):
        leaf = name.split(".")[3]
        return "adapter banks (W_A, W_B)" if leaf in ("down", "up") else "FiLM heads (gamma, beta)"
    for prefix, group in PREFIX_GROUPS:
        if name.startswith(prefix):
            return group
    return "backbone"


def unique_parameters(module: torch.nn.Module) -> int:
    """Parameter count with tied weights counted once."""
    return sum(p.numel() for p in module.parameters())


def parameter_accounting(model: torch.nn.Module, saved_dir: str | Path | None = None) -> dict[str, Any]:
    """Trainable parameters by group, total, percent of the base, and bytes on disk."""
    base = getattr(model, "base_parameters", None) or unique_parameters(unwrap_backbone(model))
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            g = _group_of(name)
            groups[g] = groups.get(g, 0) + p.numel()
    trainable = sum(groups.values())
    out: dict[str, Any] = {
        "method": getattr(model, "method", type(model).__name__),
        "base_parameters": base,
        "trainable_parameters": trainable,
        "percent_of_base": 100.0 * trainable / base,
        "groups": {g: {"parameters": n, "percent_of_base": 100.0 * n / base} for g, n in groups.items()},
        "fp32_bytes": 4 * trainable,
    }
    if saved_dir is not None:  # peft's extra copy of weight LoRA (peft/) is counted apart
        files = [f for f in Path(saved_dir).rglob("*") if f.is_file()]
        peft = [f for f in files if "peft" in f.relative_to(saved_dir).parts[:1]]
        out["bytes_on_disk"] = sum(f.stat().st_size for f in files if f not in peft)
        if peft:
            out["peft_copy_bytes"] = sum(f.stat().st_size for f in peft)
    return out


def format_accounting(acc: dict[str, Any]) -> str:
    """Markdown table of an accounting dict."""
    lines = [f"method `{acc['method']}`, base {acc['base_parameters']:,} parameters", "",
             "| component | parameters | % of base |", "|---|---:|---:|"]
    for g, v in acc["groups"].items():
        lines.append(f"| {g} | {v['parameters']:,} | {v['percent_of_base']:.2f}% |")
    lines.append(f"| **total trainable** | **{acc['trainable_parameters']:,}** | **{acc['percent_of_base']:.2f}%** |")
    if "bytes_on_disk" in acc:
        lines.append(f"\nbytes on disk: {acc['bytes_on_disk']:,}")
    return "\n".join(lines)
