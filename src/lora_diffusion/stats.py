"""Multi-seed statistics (scipy.stats): summaries, paired comparisons against a reference.

For per-seed scores x (a method) and y (the reference, same seeds, paired):

    mean +- sd (ddof 1), 95% CI = mean +- t_{0.975, n-1} sd / sqrt(n)
    paired t-test on d = x - y, Bonferroni: p_adj = min(1, m p) for m comparisons
    Cohen's d (the paper's, pooled SD):  (mean x - mean y) / sqrt((sd_x^2 + sd_y^2) / 2)
    paired effect size d_z:              mean(d) / sd(d)
    Shapiro-Wilk on d (normality), Levene on (x, y) (equal variances), and the Wilcoxon
    signed-rank test on d, which is the reported test when Shapiro-Wilk rejects normality and
    the Wilcoxon test can reject at all with this many seeds: its smallest two-sided p for n
    non-zero differences is 2^(1-n) (0.25 at n = 3, 0.0625 at 5), so it needs
    m 2^(1-n) < 0.05 under Bonferroni. Below that (three to five seeds) it would call every
    difference noise, however large and consistent; the t-test stays the reported test and
    ``test`` says "paired_t; d not normal".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05


def summarize(values) -> dict[str, float]:
    """n, mean, sd (ddof 1), and the t-based 95% confidence interval of the mean."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "ci95_low": mean - half, "ci95_high": mean + half}


def cohens_d(x, y) -> float:
    """(mean x - mean y) / pooled SD with the equal-n pooling sqrt((sd_x^2 + sd_y^2) / 2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    pooled = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    return float((x.mean() - y.mean()) / pooled) if pooled > 0 else float("nan")


def cohens_dz(x, y) -> float:
    """Paired effect size mean(x - y) / sd(x - y)."""
    d = np.asarray(x, float) - np.asarray(y, float)
    sd = d.std(ddof=1)
    return float(d.mean() / sd) if sd > 0 else float("nan")


def compare_paired(x, y, num_comparisons: int = 1) -> dict[str, Any]:
    """Every test of the module docstring for one method (x) against the reference (y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or len(x) < 3:
        raise ValueError(f"paired comparison needs equal-length score lists of >= 3 seeds, got {len(x)} and {len(y)}")
    d = x - y
    constant = bool(np.allclose(d, d[0]))
    t = stats.ttest_rel(x, y) if not constant else None
    shapiro = stats.shapiro(d) if not constant else None
    wilcoxon = stats.wilcoxon(x, y) if np.any(d != 0) else None
    normal = bool(shapiro is None or shapiro.pvalue >= ALPHA)
    p_t = float(t.pvalue) if t is not None else float("nan")
    p_w = float(wilcoxon.pvalue) if wilcoxon is not None else 1.0
    nonzero = int(np.count_nonzero(d))
    wilcoxon_min_p = 2.0 ** (1 - nonzero) if nonzero else 1.0  # the smallest p it can give
    use_wilcoxon = not normal and wilcoxon_min_p * num_comparisons < ALPHA
    chosen = "wilcoxon" if use_wilcoxon else ("paired_t" if normal else "paired_t; d not normal")
    p = p_w if use_wilcoxon else p_t
    return {
        "mean_difference": float(d.mean()),
        "t_statistic": float(t.statistic) if t is not None else float("nan"),
        "p_t": p_t,
        "p_wilcoxon": p_w,
        "shapiro_p": float(shapiro.pvalue) if shapiro is not None else float("nan"),
        "normal": normal,
        "wilcoxon_min_p": wilcoxon_min_p,
        "levene_p": float(stats.levene(x, y).pvalue),
        "test": chosen,
        "p": p,
        "p_bonferroni": min(1.0, p * num_comparisons) if not math.isnan(p) else float("nan"),
        "significant": bool(p * num_comparisons < ALPHA) if not math.isnan(p) else False,
        "cohens_d": cohens_d(x, y),
        "cohens_dz": cohens_dz(x, y),
    }
