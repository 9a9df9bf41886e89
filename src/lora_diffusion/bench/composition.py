"""Serving M task adapters composed (one trunk pass per step, Eq. 22) against M separate runs.

For each M (default 2, 4, 8): M trajectory adapters (copies of one seeded adapter, perturbed
so they differ), one generation batch (``bench.workloads.generation_batch``: B rows of L
tokens, P prompt tokens, T steps, the same reveal schedule for every contender) and

- ``composed``: ``ComposedTrajectoryModel`` in ``uniform`` mode: per model call one trunk pass
  and M adapter calls on the same hidden states;
- ``separate``: M single-adapter ``TrajectoryModel`` runs of the same batch, one after the
  other (what serving M task adapters costs without composition: M trunk passes per step).

Reported: median seconds per batch (interleaved rounds), trunk passes counted by a hook on the
trunk, and the ratio separate / composed. ``python -m lora_diffusion.bench.composition --base
DIR --output FILE.json`` runs it.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import torch

from ..hub import load_base
from ..methods.compose import compose_adapters
from ..methods.trajectory import TrajectoryModel
from ..utils.io import atomic_write_json
from ..utils.repro import provenance
from .harness import count_trunk_rows, interleaved, ratio
from .workloads import generate_fn, generation_batch, method_model


def _adapters(trajectory, m: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(1)
    out = {}
    for k in range(m):
        adapter = copy.deepcopy(trajectory.adapter)
        with torch.no_grad():
            for p in adapter.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=gen))
        out[f"task{k}"] = adapter
    return out


def serving_cost(backbone, counts=(2, 4, 8), batch: int = 8, length: int = 128, prompt: int = 32,
                 num_steps: int = 100, rounds: int = 3, options: dict | None = None) -> dict[str, Any]:
    """{M: {"times", "trunk_passes", "ratio"}} for composed vs separate serving."""
    gb = generation_batch(backbone, batch, length, prompt)
    trajectory = method_model(backbone, "trajectory", {"trajectory": options or {}}, copy_base=False)
    result: dict[str, Any] = {}
    for m in counts:
        adapters = _adapters(trajectory, m)
        composed = compose_adapters(backbone, adapters, "uniform")
        singles = []
        for adapter in adapters.values():  # each on the same frozen base, with its own adapter
            single = TrajectoryModel(backbone, trajectory.cfg)
            single.adapter.load_state_dict(adapter.state_dict())
            singles.append(single.eval())
        run_composed = generate_fn(composed, gb, num_steps)
        runs = [generate_fn(s, gb, num_steps) for s in singles]

        def run_separate(runs=runs):
            return [r() for r in runs]

        passes = {}
        for name, fn in (("composed", run_composed), ("separate", run_separate)):
            with count_trunk_rows(backbone) as c:
                fn()
            passes[name] = dict(c)
        times = interleaved({"composed": run_composed, "separate": run_separate}, rounds)
        result[str(m)] = {"times": times, "trunk_passes": passes,
                          "ratio_separate_over_composed": ratio(times["separate"]["median_s"],
                                                                times["composed"]["median_s"])}
    return {"config": {"counts": list(counts), "batch": batch, "length": length, "prompt": prompt,
                       "num_steps": num_steps, "rounds": rounds, "options": options or {}},
            "threads": torch.get_num_threads(), "results": result, **provenance(0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--output", required=True, help="JSON file for the figures")
    p.add_argument("--counts", default="2,4,8")
    p.add_argument("--num-steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128)
    args = p.parse_args(argv)
    out = serving_cost(load_base(args.base), tuple(int(x) for x in args.counts.split(",")), args.batch, args.length,
                       num_steps=args.num_steps, rounds=args.rounds)
    atomic_write_json(args.output, out)
    print(json.dumps({m: r["ratio_separate_over_composed"] for m, r in out["results"].items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
