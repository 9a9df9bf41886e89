"""PNG figures of training runs (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history_path: str | Path, output: str | Path, title: str = "") -> Path:
    """Training loss (per logged step) and validation NELBO bound per token (right axis)."""
    hist = json.loads(Path(history_path).read_text())
    train = [(h["step"], h["loss"]) for h in hist if "loss" in h]
    val = [(h["step"], h["eval/nelbo_per_token"]) for h in hist if "eval/nelbo_per_token" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), color="tab:blue", alpha=0.6, label="train loss (L_simple, per masked token)")
    if val:
        ax.plot(*zip(*val), "o-", color="tab:red", label="validation NELBO bound (nats/token)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("nats")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or Path(history_path).parent.name)
    return _save(fig, output)


def plot_spectra(result: dict, output: str | Path) -> Path:
    """Normalised singular values of delta_t per phase (``analysis.analyze_rank`` output)."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for name, r in result.items():
        s = list(r["singular_values"])
        total = sum(s)
        if total > 0:
            ax.semilogy(range(1, len(s) + 1), [v / total for v in s],
                        label=f"{name}: r_eff = {r['effective_rank']:.1f} (nominal {r['nominal_rank']})")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("normalised singular value p_i")
    ax.set_title("Spectrum of trajectory perturbations delta_t per phase")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, output)


def _save(fig, output: str | Path) -> Path:
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output
