"""Where weight-space methods attach, per architecture (full parameter names, regexes).

Names are relative to the transformers masked-LM model (``DiffusionLM.mlm``).
"""

from __future__ import annotations

import re

from torch import nn

# LoRA targets: the query, key, value, attention-output and both MLP linears of every layer.
LORA_TARGETS = {
    "bert": r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)",
    "roberta": r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)",
    "distilbert": r".*transformer\.layer\.\d+\.(attention\.(q_lin|k_lin|v_lin|out_lin)|ffn\.lin1|ffn\.lin2)",
    "modernbert": r".*layers\.\d+\.(attn\.(Wqkv|Wo)|mlp\.(Wi|Wo))",
}

# Bottleneck adapters (Houlsby): after the attention-output and feed-forward-output projections.
ADAPTER_SITES = {
    "bert": (r".*encoder\.layer\.\d+\.attention\.output\.dense", r".*encoder\.layer\.\d+\.output\.dense"),
    "roberta": (r".*encoder\.layer\.\d+\.attention\.output\.dense", r".*encoder\.layer\.\d+\.output\.dense"),
    "distilbert": (r".*transformer\.layer\.\d+\.attention\.out_lin", r".*transformer\.layer\.\d+\.ffn\.lin2"),
    "modernbert": (r".*layers\.\d+\.attn\.Wo", r".*layers\.\d+\.mlp\.Wo"),
}


def model_type(mlm: nn.Module) -> str:
    return str(mlm.config.model_type)


def targets_for(table: dict, mlm: nn.Module, what: str):
    kind = model_type(mlm)
    if kind not in table:
        raise ValueError(f"{what} does not know where to attach in a {kind!r} model; supported: {sorted(table)}")
    return table[kind]


def matching_linears(mlm: nn.Module, patterns: tuple[str, ...] | str) -> list[tuple[str, nn.Linear]]:
    """(name, module) of every nn.Linear whose full name matches one of ``patterns``."""
    pats = [re.compile(p) for p in ((patterns,) if isinstance(patterns, str) else patterns)]
    found = [(n, m) for n, m in mlm.named_modules() if isinstance(m, nn.Linear) and any(p.fullmatch(n) for p in pats)]
    if not found:
        raise ValueError(f"no linear layer matches {patterns}")
    return found
