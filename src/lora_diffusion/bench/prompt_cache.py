"""Prompt caching: trunk passes, query positions, wall time and output agreement per sample for
``prompt_cache`` none / exact / approximate on a saved adapter and a task split.

    python -m lora_diffusion.bench.prompt_cache --adapter DIR --task squad --data-root ../shared/data \
        --rows 24 --output out.json [--block-length 4 --remasking low_confidence]

Configurations (name: prompt_cache / prompt_attention):
``none`` none / full (the trained function, the reference), ``none-prefix`` none / prefix,
``exact`` exact / prefix (must equal ``none-prefix`` token for token), ``approximate``
approximate / full. Each is run on the same rows, same seed, same sampler. Reported per
configuration: trunk calls and query positions per sample (a forward hook on the trunk: a
cached pass runs L - P positions, a full pass L), seconds per sample (one run each; the
configurations are run in turn, not interleaved), the fraction of rows whose response region
equals the reference's (``agree_none``) and the prefix reference's (``agree_prefix``), the same
per response position (``token_agree_*``), and the task metric of the decoded responses.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager

import torch

CONFIGS = {"none": ("none", "full"), "none-prefix": ("none", "prefix"), "exact": ("exact", "prefix"),
           "approximate": ("approximate", "full")}


@contextmanager
def count_positions(backbone):
    """{"calls", "rows", "positions"} of every trunk forward (positions: query tokens)."""
    counts = {"calls": 0, "rows": 0, "positions": 0}

    def hook(module, args, kwargs, output):
        x = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        counts["calls"] += 1
        counts["rows"] += int(x.shape[0])
        counts["positions"] += int(x.shape[0] * x.shape[1])

    handle = backbone.trunk.register_forward_hook(hook, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()


def run(adapter: str, task: str, data_root: str, rows: int, options: dict, configs=tuple(CONFIGS)) -> dict:
    from ..api import pipeline_for
    from ..backbone import unwrap_backbone
    from ..data.encoding import ResponseFormat, pad_collate, response_tokens, tokenize_examples
    from ..data.records import DataFileConfig
    from ..data.sources import resolve_data, subsample
    from ..generation import GenerationOptions, generate
    from ..metrics import compute_metrics

    pipe = pipeline_for(adapter, "")
    backbone = unwrap_backbone(pipe.model)
    prepared = resolve_data(task=task, data_dir="", data_root=data_root, data_file="", eval_file="", eval_split="",
                            file_cfg=DataFileConfig(), metric="", fmt=ResponseFormat(), tokenizer=pipe.tokenizer,
                            need_train=False)
    data = tokenize_examples(subsample(prepared.eval, rows), pipe.tokenizer, pipe.response_format(),
                             prepared.label_words or None)
    refs = [ex.answers for ex in data.examples]
    batch_size = options.pop("batch_size", 8)
    results, regions = {}, {}
    for name in configs:
        mode, attention = CONFIGS[name]
        cfg = pipe.sampler(GenerationOptions(**options, prompt_cache=mode, prompt_attention=attention))
        gen, out, stats = torch.Generator().manual_seed(0), [], {}
        start = time.perf_counter()
        with count_positions(backbone) as counts:
            for lo in range(0, len(data), batch_size):
                batch = pad_collate([data[i] for i in range(lo, min(lo + batch_size, len(data)))],
                                    backbone.pad_token_id)
                ids = generate(pipe.model, batch, cfg, gen, cache_stats=stats)
                out += response_tokens(ids.cpu(), batch["generate_mask"], None)
        seconds = time.perf_counter() - start
        regions[name] = out
        texts = pipe.decode(data, out)
        n = len(out)
        results[name] = {"prompt_cache": mode, "prompt_attention": attention, "calls": counts["calls"],
                         "calls_per_batch": counts["calls"] / -(-n // batch_size),
                         "rows_per_sample": counts["rows"] / n, "positions_per_sample": counts["positions"] / n,
                         "seconds_per_sample": seconds / n, "cache": stats,
                         "metrics": compute_metrics(prepared.metric, texts, refs)}
    for name, out in regions.items():
        for ref in ("none", "none-prefix"):
            if ref in regions:
                key = "agree_none" if ref == "none" else "agree_prefix"
                results[name][key] = sum(a == b for a, b in zip(out, regions[ref])) / max(len(out), 1)
                pairs = [(x, y) for a, b in zip(out, regions[ref]) for x, y in zip(a, b)]
                results[name][f"token_{key}"] = sum(x == y for x, y in pairs) / max(len(pairs), 1)
    lengths = [int(data[i]["input_ids"].shape[0]) for i in range(len(data))]
    return {"adapter": adapter, "task": task, "rows": len(data), "options": options, "batch_size": batch_size,
            "mean_length": sum(lengths) / len(lengths), "response_budget": data.format.response_budget,
            "threads": torch.get_num_threads(), "results": results}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--rows", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--remasking", default="random")
    p.add_argument("--block-length", type=int, default=0)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    options = {"remasking": args.remasking, "block_length": args.block_length, "num_steps": args.steps,
               "batch_size": args.batch_size}
    out = run(args.adapter, args.task, args.data_root, args.rows, options, tuple(args.configs.split(",")))
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1)
    for name, r in out["results"].items():
        print(name, {k: v for k, v in r.items() if k not in ("cache",)})


if __name__ == "__main__":
    main()
