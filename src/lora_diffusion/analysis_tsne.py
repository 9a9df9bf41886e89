"""t-SNE of the trajectory perturbations, by phase and by task (the paper's perturbation map).

For each trained trajectory adapter (one per task) and each phase p, the perturbations
delta_t (D,) that the adapter adds at the response positions of its task's rows, with t drawn
from the phase and x_t from q(x_t | x_0) (``analysis.collect_deltas``), are pooled:
X (N, D) with a phase and a task label per row. The figure is scikit-learn's t-SNE of X
(PCA init, seeded); the numbers behind it are the 2-D points with their labels and, because a
t-SNE picture alone proves little, the silhouette score (cosine, in the original D dimensions)
of the phase grouping within each task and of the task grouping within each phase: near 1 the
groups are separate, near 0 they overlap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .analysis import collect_deltas


def gather(runs: list[tuple[str, Any, Any]], max_rows: int = 200, seed: int = 0,
           per_group: int = 300) -> tuple[np.ndarray, list[str], list[str]]:
    """X (N, D) float64, phase labels, task labels from ``runs`` = [(task label, trajectory
    model, encoded rows)]; at most ``per_group`` points per (task, phase), a seeded subsample."""
    xs, phases, tasks = [], [], []
    rng = np.random.default_rng(seed)
    for label, model, data in runs:
        for phase, deltas in collect_deltas(model, data, seed=seed, max_rows=max_rows).items():
            d = deltas.double().numpy()
            if len(d) > per_group:
                d = d[np.sort(rng.choice(len(d), per_group, replace=False))]
            xs.append(d)
            phases += [phase] * len(d)
            tasks += [label] * len(d)
    if not xs:
        raise ValueError("no perturbations collected: the data has no response positions")
    return np.concatenate(xs), phases, tasks


def silhouette(x: np.ndarray, labels: list[str]) -> float | None:
    """Cosine silhouette of a grouping (None with fewer than 2 groups or 3 points)."""
    from sklearn.metrics import silhouette_score

    if len(set(labels)) < 2 or len(labels) < 3 or len(set(labels)) >= len(labels):
        return None
    return float(silhouette_score(x, labels, metric="cosine"))


def embed(x: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """t-SNE to 2-D: (N, D) -> (N, 2); the perplexity is capped below N / 3."""
    from sklearn.manifold import TSNE

    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)


def analyze_tsne(runs: list[tuple[str, Any, Any]], max_rows: int = 200, seed: int = 0,
                 perplexity: float = 30.0) -> dict[str, Any]:
    """Points, labels and silhouettes (see the module docstring)."""
    x, phases, tasks = gather(runs, max_rows, seed)
    points = embed(x, perplexity, seed)
    by_phase = {t: silhouette(x[[i for i, k in enumerate(tasks) if k == t]],
                              [p for p, k in zip(phases, tasks) if k == t]) for t in dict.fromkeys(tasks)}
    by_task = {p: silhouette(x[[i for i, q in enumerate(phases) if q == p]],
                             [k for k, q in zip(tasks, phases) if q == p]) for p in dict.fromkeys(phases)}
    return {"points": points.tolist(), "phase": phases, "task": tasks, "dims": int(x.shape[1]),
            "silhouette_phase_within_task": by_phase, "silhouette_task_within_phase": by_task,
            "mean_norm": {t: float(np.linalg.norm(x[[i for i, k in enumerate(tasks) if k == t]], axis=1).mean())
                          for t in dict.fromkeys(tasks)},
            "perplexity": perplexity, "seed": seed}


def plot_tsne(result: dict[str, Any], output: str | Path) -> Path:
    """Two panels of the same points: coloured by phase, and by task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = np.asarray(result["points"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), dpi=120)
    for ax, key, title in ((axes[0], "phase", "by phase"), (axes[1], "task", "by task")):
        labels = result[key]
        for name in dict.fromkeys(labels):
            idx = [i for i, v in enumerate(labels) if v == name]
            ax.scatter(pts[idx, 0], pts[idx, 1], s=6, alpha=0.6, label=name)
        ax.set_title(f"t-SNE of the perturbations, {title}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output

