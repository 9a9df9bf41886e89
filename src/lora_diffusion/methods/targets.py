"""Where weight-space methods attach, per architecture (full parameter names, regexes).

Names are relative to the transformers model (``DiffusionLM.mlm``). A model type not in a table
(remote-code models, new encoders) uses the first known layout whose pattern matches one of its
linear layers (LLaDA's ``blocks.N.q_proj``, Llama's ``layers.N.self_attn.q_proj``, BERT's ...);
a model matching none is refused with its type and the known ones named.
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
    "deberta-v2": r".*encoder\.layer\.\d+\.(attention\.self\.(query_proj|key_proj|value_proj)|attention\.output\.dense|intermediate\.dense|output\.dense)",
    "llama": r".*layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))",
    "gpt2": r".*h\.\d+\.(attn\.(c_attn|c_proj)|mlp\.(c_fc|c_proj))",
    "llada": r".*blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)",
}

# Bottleneck adapters (Houlsby): after the attention-output and feed-forward-output projections.
ADAPTER_SITES = {
    "bert": (r".*encoder\.layer\.\d+\.attention\.output\.dense", r".*encoder\.layer\.\d+\.output\.dense"),
    "roberta": (r".*encoder\.layer\.\d+\.attention\.output\.dense", r".*encoder\.layer\.\d+\.output\.dense"),
    "distilbert": (r".*transformer\.layer\.\d+\.attention\.out_lin", r".*transformer\.layer\.\d+\.ffn\.lin2"),
    "modernbert": (r".*layers\.\d+\.attn\.Wo", r".*layers\.\d+\.mlp\.Wo"),
    "deberta-v2": (r".*encoder\.layer\.\d+\.attention\.output\.dense", r".*encoder\.layer\.\d+\.output\.dense"),
    "llama": (r".*layers\.\d+\.self_attn\.o_proj", r".*layers\.\d+\.mlp\.down_proj"),
    "gpt2": (r".*h\.\d+\.attn\.c_proj", r".*h\.\d+\.mlp\.c_proj"),
    "llada": (r".*blocks\.\d+\.attn_out", r".*blocks\.\d+\.ff_out"),
}
# model types whose layout is another's (same module names)
ALIASES = {"xlm-roberta": "roberta", "electra": "bert", "camembert": "roberta", "eurobert": "llama",
           "qwen2": "llama", "mistral": "llama", "qwen3": "llama", "gemma": "llama", "Dream": "llama"}


def model_type(mlm: nn.Module) -> str:
    return str(mlm.config.model_type)


def _linear_like(module: nn.Module) -> bool:
    """nn.Linear, or transformers' Conv1D (GPT-2: weight (in, out))."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _matches(mlm: nn.Module, patterns) -> bool:
    pats = [re.compile(p) for p in ((patterns,) if isinstance(patterns, str) else patterns)]
    return any(_linear_like(m) and any(p.fullmatch(n) for p in pats) for n, m in mlm.named_modules())


def targets_for(table: dict, mlm: nn.Module, what: str):
    kind = model_type(mlm)
    kind = ALIASES.get(kind, kind)
    if kind in table:
        return table[kind]
    for patterns in table.values():  # an unknown model type with a known layout
        if _matches(mlm, patterns):
            return patterns
    raise ValueError(f"{what} does not know where to attach in a {kind!r} model ({type(mlm).__name__}); "
                     f"supported layouts: {sorted(table)} and {sorted(ALIASES)}")


def out_features(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else int(module.weight.shape[1])


def matching_linears(mlm: nn.Module, patterns: tuple[str, ...] | str) -> list[tuple[str, nn.Linear]]:
    """(name, module) of every linear layer (or GPT-2 Conv1D) whose full name matches one of ``patterns``."""
    pats = [re.compile(p) for p in ((patterns,) if isinstance(patterns, str) else patterns)]
    found = [(n, m) for n, m in mlm.named_modules() if _linear_like(m) and any(p.fullmatch(n) for p in pats)]
    if not found:
        raise ValueError(f"no linear layer matches {patterns}")
    return found
