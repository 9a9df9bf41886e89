"""A tiny LLaDA-style diffusion LM as *custom code* (config.json with ``auto_map``,
configuration_*.py, modeling_*.py), written to a directory: what ``trust_remote_code`` loads
for LLaDA / Dream, without a download. Layout as LLaDA's: ``model.transformer.{wte, blocks.N.
(q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj, ff_out), ln_f, ff_out}``, bidirectional
attention, the inner model returns logits and (on request) hidden states, the mask token id
in the config."""

from __future__ import annotations

from pathlib import Path

CONFIG_CODE = '''
from transformers import PretrainedConfig


class TinyLladaConfig(PretrainedConfig):
    model_type = "tiny_llada"

    def __init__(self, vocab_size=30522, d_model=32, n_layers=2, n_heads=2, mlp_hidden_size=64,
                 mask_token_id=103, pad_token_id=0, **kwargs):
        self.vocab_size, self.d_model, self.n_layers, self.n_heads = vocab_size, d_model, n_layers, n_heads
        self.mlp_hidden_size, self.mask_token_id = mlp_hidden_size, mask_token_id
        self.hidden_size, self.num_attention_heads = d_model, n_heads
        super().__init__(pad_token_id=pad_token_id, **kwargs)
'''

MODEL_CODE = '''
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_tiny_llada import TinyLladaConfig


@dataclass
class TinyLladaOutput(ModelOutput):
    logits: torch.Tensor = None
    hidden_states: tuple = None


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.h = c.d_model, c.n_heads
        self.attn_norm, self.ff_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.ff_proj, self.up_proj = nn.Linear(d, c.mlp_hidden_size), nn.Linear(d, c.mlp_hidden_size)
        self.ff_out = nn.Linear(c.mlp_hidden_size, d)

    def forward(self, x, mask):
        b, n, d = x.shape
        y = self.attn_norm(x)
        q, k, v = (p(y).view(b, n, self.h, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # bidirectional
        x = x + self.attn_out(a.transpose(1, 2).reshape(b, n, d))
        y = self.ff_norm(x)
        return x + self.ff_out(nn.functional.silu(self.ff_proj(y)) * self.up_proj(y))


class TinyLladaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.d_model), blocks=nn.ModuleList(Block(c) for _ in range(c.n_layers)),
            ln_f=nn.LayerNorm(c.d_model), ff_out=nn.Linear(c.d_model, c.vocab_size, bias=False)))
        self.pos = nn.Embedding(512, c.d_model)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=False, **kw):
        x = self.transformer.wte(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.pos(torch.arange(x.shape[1], device=x.device))[None]
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        hidden = []
        for block in self.transformer.blocks:
            if output_hidden_states:
                hidden.append(x)
            x = block(x, mask)
        x = self.transformer.ln_f(x)
        if output_hidden_states:
            hidden.append(x)
        return TinyLladaOutput(logits=self.transformer.ff_out(x), hidden_states=tuple(hidden) or None)


class TinyLladaModelLM(PreTrainedModel):
    config_class = TinyLladaConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False

    def __init__(self, config):
        super().__init__(config)
        self.model = TinyLladaModel(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=False, **kw):
        return self.model(input_ids, attention_mask, inputs_embeds, output_hidden_states)

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def set_input_embeddings(self, value):
        self.model.transformer.wte = value

    def get_output_embeddings(self):
        return self.model.transformer.ff_out
'''


def write_tiny_llada(directory: str | Path, seed: int = 0) -> Path:
    """Write the custom code, a seeded random model (config.json with ``auto_map``,
    model.safetensors) and the packaged tokenizer to ``directory``; return it."""
    import torch
    from transformers import AutoConfig, AutoModel

    from .testing import packaged_tokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "configuration_tiny_llada.py").write_text(CONFIG_CODE)
    (directory / "modeling_tiny_llada.py").write_text(MODEL_CODE)
    tok = packaged_tokenizer()
    auto_map = {"AutoConfig": "configuration_tiny_llada.TinyLladaConfig",
                "AutoModel": "modeling_tiny_llada.TinyLladaModelLM"}
    import json

    (directory / "config.json").write_text(json.dumps({
        "model_type": "tiny_llada", "architectures": ["TinyLladaModelLM"], "auto_map": auto_map,
        "vocab_size": len(tok), "d_model": 32, "n_layers": 2, "n_heads": 2, "mlp_hidden_size": 64,
        "mask_token_id": int(tok.mask_token_id), "pad_token_id": 0}))
    config = AutoConfig.from_pretrained(str(directory), trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config, trust_remote_code=True)
    model.save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return directory
