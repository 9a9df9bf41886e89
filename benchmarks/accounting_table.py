"""Trainable parameters, percent of base and bytes saved for every registered method on one
base (default options), as a markdown table.

    python benchmarks/accounting_table.py --base ~/.cache/lora-diffusion/bases/minilm-wt2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lora_diffusion.hub import load_base
from lora_diffusion.methods import registered_methods
from lora_diffusion.methods.accounting import parameter_accounting
from lora_diffusion.methods.persistence import save_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="minilm")
    args = ap.parse_args()
    from lora_diffusion.finetune import build_method_model

    rows = ["| method | trainable parameters | % of base | bytes saved |", "|---|---:|---:|---:|"]
    for name in registered_methods():
        model, fp = build_method_model(load_base(args.base), name)
        with tempfile.TemporaryDirectory() as tmp:
            acc = parameter_accounting(model, save_method(model, Path(tmp) / "saved", fp))
        rows.append(f"| {name} | {acc['trainable_parameters']:,} | {acc['percent_of_base']:.2f}% | "
                    f"{acc['bytes_on_disk']:,} |")
    print(f"base {args.base}: {acc['base_parameters']:,} parameters\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
