"""``lora-diffusion bench``: training and inference cost of every method, side by side."""

from .suite import BenchConfig, run_bench

__all__ = ["BenchConfig", "run_bench"]
