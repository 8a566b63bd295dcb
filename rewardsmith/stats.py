"""Honest statistics over seeds and tasks, with rliable's definitions (Agarwal et al., 2021).

* :func:`iqm` is the interquartile mean exactly as ``rliable.metrics.aggregate_iqm``: the 25%
  trimmed mean ``scipy.stats.trim_mean(x, 0.25)``, which drops ``int(0.25 * n)`` values at each end.
  For 1-3 values nothing is dropped and it is the plain mean; for 4 values it is the mean of the
  middle two.
* Intervals are rliable's: ``rliable.library.get_interval_estimates``, a stratified bootstrap
  (arch's bootstrap machinery; runs resampled within each task, optionally tasks too) with
  percentile intervals. No resampling is written here.
* :func:`aggregate` computes IQM, median, mean and optimality gap, each with its interval, over a
  ``{method: (n_runs, n_tasks) array}`` score dict; :func:`probability_of_improvement` compares two
  methods the same way.

rliable's bootstrap draws from NumPy's global random state; the functions here seed it with
``seed`` for reproducible intervals and restore it afterwards, so callers' random streams are
left as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_REPS = 2000
METRICS = ("iqm", "median", "mean", "optimality_gap")


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: ``scipy.stats.trim_mean(values, 0.25)`` over all values (rliable's IQM).

    Raises:
        ValueError: for an empty input.
    """
    from scipy.stats import trim_mean

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("iqm of an empty sequence")
    return float(trim_mean(x, proportiontocut=0.25, axis=None))


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global random state (what rliable's bootstrap draws from), then restore it."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _matrix(scores: Any, name: str = "scores") -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (n_runs, n_tasks) matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or inf")
    return x


def _intervals(score_dict: Mapping[str, Any], func: Callable[..., np.ndarray], reps: int, confidence: float,
               task_bootstrap: bool, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's stratified-bootstrap percentile intervals, reproducible through ``seed``."""
    from rliable import library as rly

    with _seeded(seed):
        return rly.get_interval_estimates(dict(score_dict), func, method="percentile", task_bootstrap=task_bootstrap,
                                          reps=reps, confidence_interval_size=confidence)


def bootstrap_ci(values: Sequence[float], statistic: Callable[[np.ndarray], float] = iqm, n_boot: int = DEFAULT_REPS,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the seeds in ``values`` (rliable's bootstrap).

    ``values`` are one task's runs (a ``(n, 1)`` score matrix for rliable). One value gives the
    degenerate interval ``(v, v)``; none gives NaNs. ``statistic`` receives a 1-D array.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    _, ci = _intervals({"x": x[:, None]}, lambda s: np.array([statistic(np.ravel(s))]), n_boot, confidence,
                       False, seed)
    return float(ci["x"][0, 0]), float(ci["x"][1, 0])


@dataclass
class Estimate:
    """A point estimate and its bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        """A JSON-ready copy."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3g} [{self.ci_low:.3g}, {self.ci_high:.3g}]"


def aggregate(scores: Mapping[str, Any], reps: int = DEFAULT_REPS, confidence: float = 0.95,
              task_bootstrap: bool = False, gamma: float = 1.0, seed: int = 0) -> dict[str, dict[str, Estimate]]:
    """IQM, median, mean and optimality gap of each method, with stratified-bootstrap intervals.

    Args:
        scores: ``{method: array (n_runs, n_tasks)}`` (a 1-D array is one task); normalise scores
            across tasks first (e.g. :func:`human_normalized`) when the tasks' units differ.
        reps: bootstrap replications (rliable's default is 50,000).
        confidence: coverage of the intervals.
        task_bootstrap: also resample tasks (the interval then covers other task sets, not only
            other seeds); rliable's default, False, resamples runs within each task.
        gamma: the optimality gap's threshold (scores above it count as ``gamma``).
        seed: seeds the bootstrap.

    Returns:
        ``{method: {"iqm" | "median" | "mean" | "optimality_gap": Estimate}}``; the point values are
        rliable's ``aggregate_iqm``, ``aggregate_median``, ``aggregate_mean`` and
        ``aggregate_optimality_gap`` (median and mean are over the per-task means of the runs).
    """
    from rliable import metrics

    mats = {name: _matrix(s, f"scores[{name!r}]") for name, s in scores.items()}

    def func(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x),
                         metrics.aggregate_optimality_gap(x, gamma)])

    points, cis = _intervals(mats, func, reps, confidence, task_bootstrap, seed)
    return {name: {m: Estimate(float(points[name][i]), float(cis[name][0, i]), float(cis[name][1, i]))
                   for i, m in enumerate(METRICS)} for name in mats}


def probability_of_improvement(scores_x: Any, scores_y: Any, reps: int = DEFAULT_REPS, confidence: float = 0.95,
                               seed: int = 0) -> Estimate:
    """P(X > Y): rliable's average probability of improvement of X over Y, with its interval.

    Per task, the Mann-Whitney U statistic over the two methods' runs divided by ``n_x * n_y``
    (ties count a half), averaged over tasks; the two methods' runs are resampled independently
    within each task. ``scores_x`` and ``scores_y`` are ``(n_runs, n_tasks)`` with the same tasks.
    """
    from rliable import metrics

    x, y = _matrix(scores_x, "scores_x"), _matrix(scores_y, "scores_y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"scores_x and scores_y cover different numbers of tasks ({x.shape[1]} vs {y.shape[1]})")
    points, cis = _intervals({"xy": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
                             reps, confidence, False, seed)
    return Estimate(float(points["xy"][0]), float(cis["xy"][0, 0]), float(cis["xy"][1, 0]))


def human_normalized(method: float, human: float, sparse: float) -> float | None:
    """``(method - sparse) / |human - sparse|``; None when human and sparse coincide."""
    gap = abs(human - sparse)
    if gap < 1e-12:
        return None
    return float((method - sparse) / gap)


@dataclass
class Summary:
    """Aggregate of one method over seeds on one task."""

    n: int
    mean: float
    std: float
    iqm: float
    ci_low: float
    ci_high: float
    values: list[float]

    def to_dict(self) -> dict:
        """A JSON-ready copy."""
        return asdict(self)

    def __str__(self) -> str:
        return f"IQM {self.iqm:.3g} [{self.ci_low:.3g}, {self.ci_high:.3g}] (mean {self.mean:.3g} ± {self.std:.3g}, n={self.n})"


def summarize(values: Sequence[float], seed: int = 0, reps: int = DEFAULT_REPS) -> Summary:
    """Mean, (population) std, IQM and its 95% percentile bootstrap interval over seeds.

    Raises:
        ValueError: for no values.
    """
    x = [float(v) for v in values]
    lo, hi = bootstrap_ci(x, n_boot=reps, seed=seed)
    return Summary(len(x), float(np.mean(x)), float(np.std(x)), iqm(x), lo, hi, x)


__all__ = ["METRICS", "Estimate", "Summary", "aggregate", "bootstrap_ci", "human_normalized", "iqm",
           "probability_of_improvement", "summarize"]
