"""rewardsmith.stats against rliable's and scipy's own functions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from rliable import library as rly
from rliable import metrics

from rewardsmith.stats import (
    Summary,
    aggregate,
    bootstrap_ci,
    human_normalized,
    iqm,
    probability_of_improvement,
    summarize,
)


def _weighted_iqm_before(values: list[float]) -> float:
    """The IQM rewardsmith used before: fractional weights on the values straddling the quartiles."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    lo, hi = 0.25 * n, 0.75 * n
    w = np.clip(np.minimum(np.arange(1, n + 1), hi) - np.maximum(np.arange(n), lo), 0, None)
    return float(np.sum(w * x) / np.sum(w))


def _rliable_ci(scores: dict, func, reps: int, seed: int, **kwargs) -> tuple[dict, dict]:
    np.random.seed(seed)  # rliable's bootstrap draws from the global state
    return rly.get_interval_estimates(scores, func, reps=reps, **kwargs)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 10, 13])
def test_iqm_is_rliables_trimmed_mean(n: int) -> None:
    x = np.random.default_rng(n).lognormal(size=n) * 10
    assert iqm(x) == pytest.approx(float(metrics.aggregate_iqm(x[:, None])), rel=1e-12)
    assert iqm(x) == pytest.approx(float(scipy.stats.trim_mean(x, 0.25)), rel=1e-12)
    matrix = np.random.default_rng(n).normal(size=(n, 3))
    assert iqm(matrix) == pytest.approx(float(metrics.aggregate_iqm(matrix)), rel=1e-12)


def test_iqm_definition_on_small_samples() -> None:
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)  # the middle two of four
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx(np.mean([2, 3, 4, 5]))
    assert iqm([7.0]) == 7.0
    with pytest.raises(ValueError, match="empty"):
        iqm([])


def test_three_seeds_iqm_is_the_mean_where_the_weighted_version_was_not() -> None:
    seeds = [1.67, 1.75, 2.12]  # hopper-forward at 100k, the best reward's three seeds (RESULTS.md)
    assert iqm(seeds) == pytest.approx(np.mean(seeds))  # trim_mean cuts int(0.75) = 0 values per end
    assert _weighted_iqm_before(seeds) == pytest.approx((0.25 * 1.67 + 1.75 + 0.25 * 2.12) / 1.5)
    assert abs(iqm(seeds) - _weighted_iqm_before(seeds)) > 0.04
    skewed = [0.0, 1.0, 10.0]
    assert iqm(skewed) == pytest.approx(11 / 3)
    assert _weighted_iqm_before(skewed) == pytest.approx(3.5 / 1.5)


def test_bootstrap_ci_is_rliables_percentile_interval() -> None:
    x = np.random.default_rng(3).normal(5.0, 2.0, size=6)
    lo, hi = bootstrap_ci(x, n_boot=1000, seed=7)
    _, ci = _rliable_ci({"x": x[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), 1000, 7)
    assert (lo, hi) == pytest.approx((ci["x"][0, 0], ci["x"][1, 0]), rel=1e-12)
    assert lo < iqm(x) < hi
    assert bootstrap_ci(x, n_boot=1000, seed=7) == (lo, hi)  # reproducible
    assert bootstrap_ci(x, n_boot=1000, seed=8) != (lo, hi)


def test_bootstrap_leaves_the_global_random_state_alone() -> None:
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    bootstrap_ci([1.0, 2.0, 4.0], n_boot=200)
    assert np.array_equal(np.random.random(3), expected)


def test_small_samples() -> None:
    assert bootstrap_ci([4.0]) == (4.0, 4.0)
    assert all(np.isnan(bootstrap_ci([])))
    # 2-3 seeds still go through the bootstrap: the all-lowest resample has probability
    # 1/n**n > 2.5%, so the 95% percentile interval is the range of the seeds.
    assert bootstrap_ci([1.0, 2.0]) == (1.0, 2.0)
    assert bootstrap_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_summarize() -> None:
    s = summarize([1.0, 2.0, 6.0])
    assert isinstance(s, Summary)
    assert (s.n, s.mean, s.iqm, s.values) == (3, 3.0, 3.0, [1.0, 2.0, 6.0])
    assert s.std == pytest.approx(np.std([1.0, 2.0, 6.0]))
    assert (s.ci_low, s.ci_high) == (1.0, 6.0)
    assert s.to_dict()["ci_high"] == 6.0 and "IQM 3" in str(s)
    one = summarize([5.0])
    assert (one.iqm, one.ci_low, one.ci_high, one.std) == (5.0, 5.0, 5.0, 0.0)


def test_aggregate_matches_rliable() -> None:
    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(0.5, 0.3, size=(5, 4)), "b": rng.normal(0.9, 0.3, size=(4, 4))}
    got = aggregate(scores, reps=500, seed=2)

    def func(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x),
                         metrics.aggregate_optimality_gap(x)])

    points, cis = _rliable_ci(scores, func, 500, 2)
    for name in scores:
        for i, metric in enumerate(("iqm", "median", "mean", "optimality_gap")):
            est = got[name][metric]
            assert est.value == pytest.approx(points[name][i], rel=1e-12)
            assert (est.ci_low, est.ci_high) == pytest.approx((cis[name][0, i], cis[name][1, i]), rel=1e-12)
            assert est.ci_low <= est.value <= est.ci_high
    assert got["a"]["mean"].value == pytest.approx(scores["a"].mean())
    assert got["a"]["median"].value == pytest.approx(np.median(scores["a"].mean(axis=0)))
    assert got["b"]["optimality_gap"].value == pytest.approx(1 - np.minimum(scores["b"], 1).mean())


def test_aggregate_task_bootstrap_and_shapes() -> None:
    rng = np.random.default_rng(1)
    scores = {"a": rng.normal(size=(3, 5))}
    by_runs = aggregate(scores, reps=400, seed=0)["a"]["iqm"]
    by_tasks = aggregate(scores, reps=400, seed=0, task_bootstrap=True)["a"]["iqm"]
    _, cis = _rliable_ci(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), 400, 0, task_bootstrap=True)
    assert (by_tasks.ci_low, by_tasks.ci_high) == pytest.approx((cis["a"][0, 0], cis["a"][1, 0]))
    assert (by_tasks.ci_low, by_tasks.ci_high) != (by_runs.ci_low, by_runs.ci_high)
    one_task = aggregate({"a": [1.0, 2.0, 3.0, 4.0]}, reps=200)["a"]
    assert one_task["iqm"].value == pytest.approx(2.5) and one_task["mean"].value == pytest.approx(2.5)
    with pytest.raises(ValueError, match="n_runs, n_tasks"):
        aggregate({"a": np.zeros((2, 2, 2))})
    with pytest.raises(ValueError, match="NaN"):
        aggregate({"a": [1.0, float("nan")]})


def test_probability_of_improvement_matches_rliable() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(1.0, 1.0, size=(5, 3)), rng.normal(0.0, 1.0, size=(6, 3))
    est = probability_of_improvement(x, y, reps=300, seed=5)
    assert est.value == pytest.approx(float(metrics.probability_of_improvement(x, y)))
    _, cis = _rliable_ci({"xy": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), 300, 5)
    assert (est.ci_low, est.ci_high) == pytest.approx((cis["xy"][0, 0], cis["xy"][1, 0]))
    assert est.value > 0.5
    assert probability_of_improvement(x, x, reps=50).value == 0.5
    assert probability_of_improvement([[2.0], [3.0]], [[0.0], [1.0]], reps=50).value == 1.0
    with pytest.raises(ValueError, match="different numbers of tasks"):
        probability_of_improvement(x, y[:, :2])


def test_human_normalized() -> None:
    assert human_normalized(5.0, 10.0, 0.0) == pytest.approx(0.5)
    assert human_normalized(-5.0, -10.0, 0.0) == pytest.approx(-0.5)
    assert human_normalized(1.0, 2.0, 2.0) is None
