"""Peak training memory of one method, in a fresh process (peak RSS is per process).

    python -m lora_diffusion.bench.memory --base B --method M --batch 16 --length 128 --steps 3

Prints one JSON line: RSS after imports, after loading the base, and the peak over the
training steps, in MB (``utils.memory``: VmRSS and VmHWM, not the parent-inherited
ru_maxrss). Training memory = peak - RSS after imports (weights, gradients, optimiser
state and activations: what ``torch.cuda.max_memory_allocated`` counts on a GPU).
"""

from __future__ import annotations

import argparse
import json

from ..utils.memory import peak_rss_mb, rss_mb


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--options", default="{}", help="JSON: method -> its options")
    args = ap.parse_args(argv)
    import torch

    from ..hub import load_base
    from .workloads import train_batch, train_step_fn

    if args.threads:
        torch.set_num_threads(args.threads)
    start = rss_mb()
    backbone = load_base(args.base)
    loaded = rss_mb()
    step = train_step_fn(backbone, args.method, train_batch(backbone, args.batch, args.length), json.loads(args.options),
                         copy_base=False)
    for _ in range(args.steps):
        step()
    print(json.dumps({"method": args.method, "rss_start_mb": start, "rss_loaded_mb": loaded, "peak_rss_mb": peak_rss_mb(),
                      "training_memory_mb": peak_rss_mb() - start}))


if __name__ == "__main__":
    main()
