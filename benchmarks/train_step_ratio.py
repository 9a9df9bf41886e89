"""Training-step time and peak memory of each method relative to full fine-tuning, measured
side by side on one base, batch and length (each method in a fresh subprocess so that peak
memory is its own). CPU absolute times are noisy here: read the ratios.

    python benchmarks/train_step_ratio.py --base ~/.cache/lora-diffusion/bases/minilm-wt2 \
        --batch 32 --max-len 64 --steps 20 --output reports/train_step_ratio.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one_method(base: str, method: str, batch: int, max_len: int, steps: int, warmup: int) -> dict:
    import torch

    from lora_diffusion.data.classification import (
        SST2,
        encode_examples,
        pad_collate,
        read_labelled_tsv,
    )
    from lora_diffusion.demo import resource as packaged
    from lora_diffusion.finetune import build_method_model
    from lora_diffusion.hub import load_base
    from lora_diffusion.objective import DiffusionObjective

    backbone = load_base(base)
    rows = read_labelled_tsv(packaged("sst2_train_sample.tsv"), {0, 1})[:batch]
    data = encode_examples(rows, SST2, backbone.tokenizer, max_len)
    b = pad_collate([data[i] for i in range(batch)], backbone.pad_token_id)
    model, _ = build_method_model(backbone, method, {})
    model.train()
    objective = DiffusionObjective(backbone.diffusion)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    gen = torch.Generator().manual_seed(0)
    from lora_diffusion.utils.memory import peak_rss_mb, rss_mb

    rss_loaded = rss_mb()

    def step() -> None:
        loss, _ = objective(model, b, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "method": method,
        "median_step_s": statistics.median(times),
        "iqr_step_s": statistics.quantiles(times, n=4)[2] - statistics.quantiles(times, n=4)[0],
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_load_mb": rss_loaded,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "tokens_per_batch": int(b["attention_mask"].sum()),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="minilm")
    ap.add_argument("--methods", default="full,trajectory")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternate the methods this many times")
    ap.add_argument("--output")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(one_method(args.base, args._child, args.batch, args.max_len, args.steps, args.warmup)))
        return
    runs: dict[str, list[dict]] = {}
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits every method alike
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--base", args.base, "--batch", str(args.batch), "--max-len",
                   str(args.max_len), "--steps", str(args.steps), "--warmup", str(args.warmup), "--_child", method]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            runs.setdefault(method, []).append(json.loads(out))
    summary = {m: {"median_step_s": statistics.median(r["median_step_s"] for r in rs),
                   "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                   "rss_after_load_mb": max(r["rss_after_load_mb"] for r in rs),
                   "trainable_parameters": rs[0]["trainable_parameters"]} for m, rs in runs.items()}
    ref = summary.get("full")
    if ref:
        for s in summary.values():
            s["step_time_vs_full"] = s["median_step_s"] / ref["median_step_s"]
            s["peak_rss_vs_full"] = s["peak_rss_mb"] / ref["peak_rss_mb"]
            s["training_memory_vs_full"] = (s["peak_rss_mb"] - s["rss_after_load_mb"]) / max(
                ref["peak_rss_mb"] - ref["rss_after_load_mb"], 1e-9)
    result = {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")}, "summary": summary, "runs": runs}
    print(json.dumps(summary, indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
