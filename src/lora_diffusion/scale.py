"""Memory per GPU for large bases, from the parameter accounting of every method.

``python -m lora_diffusion.scale`` prints the table for an 8B base (LLaDA-8B dimensions: 32
layers, D 4096, FFN 12288, 32 heads, vocabulary 126,464; 8.0 B parameters). The parameter
counts are exact: each method is applied to that architecture built on PyTorch's ``meta``
device (no memory, no download) and counted as ``parameter_accounting`` counts them.

Bytes per GPU (world size W; ``accelerate`` mixed precision keeps fp32 weights and autocasts):
  weights       frozen_bytes x frozen + 4 x trainable            (/W under FSDP FULL_SHARD / ZeRO-3,
                plus two gathered layers: the one computed and the prefetched next one)
  gradients     4 x trainable                                    (/W under ZeRO-2, ZeRO-3, FSDP)
  AdamW         8 x trainable (two fp32 moments)                 (/W under ZeRO-1/2/3, FSDP)
  activations   trunk trained through (full, LoRA, adapters, BitFit, prefix): 2 bytes x tokens x
                layers x (9 D + 4 F) stored values per token and layer (norm inputs and outputs,
                q, k, v, attention output, residual; gate, up, SiLU(gate), their product); with
                gradient checkpointing only the layer inputs, 2 x tokens x layers x D, plus one
                layer's working set. The trajectory method never backpropagates through the
                trunk: one layer's working set only.
  logits        8 bytes x selected positions x V (fp32 logits and their gradient); the head runs
                only at masked positions (half the tokens assumed)
Not counted: the CUDA context and allocator fragmentation (add ~1-3 GiB), communication buffers.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GIB = 2**30
SHARDING = ("ddp", "zero1", "zero2", "zero3", "fsdp")


@dataclass
class BaseShape:
    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    vocab: int


LLADA_8B = BaseShape("LLaDA-8B dimensions", layers=32, hidden=4096, ffn=12288, heads=32, vocab=126464)


def meta_backbone(shape: BaseShape):
    """A ``DiffusionLM`` of ``shape`` (Llama layout, bidirectional: the a2d family) on the meta device."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from .backbone import DiffusionLM
    from .testing import packaged_tokenizer

    cfg = LlamaConfig(hidden_size=shape.hidden, intermediate_size=shape.ffn, num_hidden_layers=shape.layers,
                      num_attention_heads=shape.heads, num_key_value_heads=shape.heads, vocab_size=shape.vocab,
                      mask_token_id=shape.vocab - 1, tie_word_embeddings=False)
    with torch.device("meta"):
        mlm = AutoModelForCausalLM.from_config(cfg)
    return DiffusionLM(mlm, packaged_tokenizer(), family="a2d")


def method_parameters(shape: BaseShape = LLADA_8B, methods: tuple[str, ...] = ("full", "lora", "adapter", "trajectory"),
                      options: dict | None = None) -> dict[str, dict[str, int]]:
    """{method: {"total", "trainable"}} for each method applied to ``shape`` (defaults as in
    ``finetune``); a method refused on this layout is left out."""
    from .methods import apply_method, method_config

    out = {}
    for name in methods:
        try:
            model = apply_method(name, meta_backbone(shape), method_config(name, (options or {}).get(name)))
        except ValueError:
            continue
        params = dict(model.named_parameters())  # tied weights once
        out[name] = {"total": sum(p.numel() for p in params.values()),
                     "trainable": sum(p.numel() for p in params.values() if p.requires_grad)}
    return out


def memory_per_gpu(total: int, trainable: int, shape: BaseShape, *, world: int = 8, sharding: str = "fsdp",
                   tokens: int = 2048, trunk_grad: bool = True, checkpointing: bool = False,
                   frozen_bytes: int = 4) -> dict[str, float]:
    """GiB per GPU by component (see the module docstring); ``tokens`` per GPU micro-batch."""
    if sharding not in SHARDING:
        raise ValueError(f"sharding must be one of {SHARDING}, got {sharding!r}")
    shard = {"ddp": (1, 1, 1), "zero1": (1, 1, world), "zero2": (1, world, world),
             "zero3": (world, world, world), "fsdp": (world, world, world)}[sharding]
    frozen = total - trainable
    weights = (frozen_bytes * frozen + 4 * trainable) / shard[0]
    if shard[0] > 1:  # the gathered (unsharded) layer being computed and the prefetched next one
        weights += 2 * max(frozen_bytes, 4) * total / shape.layers
    grads = 4 * trainable / shard[1]
    adam = 8 * trainable / shard[2]
    per_layer = 2 * tokens * (9 * shape.hidden + 4 * shape.ffn)
    if trunk_grad and not checkpointing:
        acts = shape.layers * per_layer
    elif trunk_grad:
        acts = 2 * tokens * shape.layers * shape.hidden + per_layer
    else:
        acts = per_layer
    logits = 8 * (tokens // 2) * shape.vocab
    parts = {"weights": weights, "gradients": grads, "adam": adam, "activations": acts, "logits": logits}
    out = {k: v / GIB for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def table(shape: BaseShape = LLADA_8B, world: int = 8, tokens: int = 2048) -> str:
    counts = method_parameters(shape)
    total_base = counts["full"]["total"]
    lines = [f"Memory per GPU (GiB), {shape.name} ({total_base / 1e9:.2f} B parameters), {world} GPUs, "
             f"{tokens} tokens per GPU micro-batch, fp32 weights + bf16 autocast (accelerate):", "",
             "| method | trainable | setup | weights | grads | Adam | activations | logits | total |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    setups = [("ddp", False), ("ddp", True), ("fsdp", False), ("fsdp", True)]
    for name, c in counts.items():
        for sharding, ckpt in setups:
            trunk_grad = name != "trajectory"
            if not trunk_grad and ckpt:
                continue
            m = memory_per_gpu(c["total"], c["trainable"], shape, world=world, sharding=sharding, tokens=tokens,
                               trunk_grad=trunk_grad, checkpointing=ckpt)
            setup = sharding.upper() + (" + checkpointing" if ckpt else "")
            lines.append(f"| {name} | {c['trainable'] / 1e6:,.1f} M | {setup} | {m['weights']:.1f} | "
                         f"{m['gradients']:.1f} | {m['adam']:.1f} | {m['activations']:.1f} | {m['logits']:.1f} | "
                         f"{m['total']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lora_diffusion.scale", description=__doc__.split("\n")[0])
    ap.add_argument("--world", type=int, default=8, help="GPUs (default 8)")
    ap.add_argument("--tokens", type=int, default=2048, help="tokens per GPU micro-batch (default 2048)")
    args = ap.parse_args(argv)
    print(table(world=args.world, tokens=args.tokens))


if __name__ == "__main__":
    main()
