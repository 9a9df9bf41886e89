import math

import pytest
from scipy import stats

from lora_diffusion.stats import cohens_d, cohens_dz, compare_paired, summarize

A = [1.0, 2.0, 3.0, 4.0, 5.0]
B = [2.0, 2.0, 4.0, 4.0, 6.0]


def test_summary_by_hand():
    s = summarize(A)
    assert s["mean"] == 3.0 and s["sd"] == pytest.approx(math.sqrt(2.5))
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975,4} sd / sqrt(n)
    assert s["ci95_low"] == pytest.approx(3 - half) and s["ci95_high"] == pytest.approx(3 + half)


def test_effect_sizes_by_hand_d_differs_from_dz():
    # d = (3 - 3.6) / sqrt((2.5 + 2.8) / 2); differences (-1, 0, -1, 0, -1): mean -0.6, sd sqrt(0.3)
    assert cohens_d(A, B) == pytest.approx(-0.6 / math.sqrt(2.65))
    assert cohens_dz(A, B) == pytest.approx(-0.6 / math.sqrt(0.3))
    assert abs(cohens_dz(A, B)) > 2.9 * abs(cohens_d(A, B))  # pairing removes the between-seed spread


def test_paired_t_known_answer_and_bonferroni():
    r = compare_paired(A, B, num_comparisons=5)
    # t = -0.6 / (sqrt(0.3) / sqrt(5)) = -2.449..., df 4
    assert r["t_statistic"] == pytest.approx(-0.6 / (math.sqrt(0.3) / math.sqrt(5)))
    assert r["p_t"] == pytest.approx(2 * stats.t.sf(abs(r["t_statistic"]), 4))
    assert r["p_bonferroni"] == pytest.approx(min(1.0, 5 * r["p"]))


def test_wilcoxon_used_when_differences_are_not_normal():
    x = [0.0] * 9 + [10.0]
    y = [0.1 * i for i in range(10)]
    r = compare_paired(x, y)
    assert r["shapiro_p"] < 0.05 and r["test"] == "wilcoxon" and r["p"] == r["p_wilcoxon"]
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon(x, y).pvalue)


def test_bad_input():
    with pytest.raises(ValueError, match=">= 3 seeds"):
        compare_paired([1, 2], [1, 2])


def test_wilcoxon_is_not_reported_where_it_cannot_reject():
    # three seeds, a large consistent difference with non-normal d: Wilcoxon's smallest two-sided
    # p is 2^(1-3) = 0.25, so it would call this noise; the t-test stays the reported test
    x, y = [80.0, 81.0, 85.0], [72.0, 73.0001, 72.0]
    r = compare_paired(x, y)
    assert r["shapiro_p"] < 0.05 and not r["normal"] and r["wilcoxon_min_p"] == 0.25
    assert r["test"] == "paired_t; d not normal" and r["p"] == r["p_t"] and r["p_wilcoxon"] >= 0.25
    # six seeds reach 2^-5 = 0.031 < 0.05 with one comparison, not under Bonferroni over two
    x6, y6 = [0.0] * 5 + [10.0], [0.1 * (i + 1) for i in range(6)]  # six non-zero differences
    assert compare_paired(x6, y6)["shapiro_p"] < 0.05
    assert compare_paired(x6, y6)["test"] == "wilcoxon"
    assert compare_paired(x6, y6, num_comparisons=2)["test"] == "paired_t; d not normal"
