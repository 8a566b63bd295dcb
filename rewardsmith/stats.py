"""Honest statistics over seeds: interquartile means, bootstrap intervals, human-normalised scores.

Follows rliable (Agarwal et al., 2021): report the interquartile mean (IQM) with a stratified
bootstrap confidence interval rather than a mean of a few lucky runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (25% trimmed each side, fractional weights).

    With fewer than 4 values it is the plain mean of the values left after trimming, which for
    1-3 values is the median-weighted mean; it is never NaN for a non-empty input.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("iqm of an empty sequence")
    lo, hi = 0.25 * n, 0.75 * n
    weights = np.clip(np.minimum(np.arange(1, n + 1), hi) - np.maximum(np.arange(n), lo), 0, None)
    return float(np.sum(weights * x) / np.sum(weights))


def bootstrap_ci(values: Sequence[float], statistic=iqm, n_boot: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over ``values``."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    samples = rng.choice(x, size=(n_boot, len(x)), replace=True)
    stats = np.array([statistic(s) for s in samples])
    alpha = (1 - confidence) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def human_normalized(method: float, human: float, sparse: float) -> float | None:
    """``(method - sparse) / |human - sparse|``; None when human and sparse coincide."""
    gap = abs(human - sparse)
    if gap < 1e-12:
        return None
    return float((method - sparse) / gap)


@dataclass
class Summary:
    """Aggregate of one method over seeds."""

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


def summarize(values: Sequence[float], seed: int = 0) -> Summary:
    """Mean, std, IQM and its 95% bootstrap interval."""
    x = [float(v) for v in values]
    lo, hi = bootstrap_ci(x, seed=seed)
    return Summary(len(x), float(np.mean(x)), float(np.std(x)), iqm(x), lo, hi, x)
