"""Scripted teachers: simulated labellers that compare two segments by their true rewards.

They follow B-Pref's simulated teachers (Lee et al. 2021, "B-Pref: Benchmarking Preference-Based
Reinforcement Learning"; ``SimTeacher`` in rll-research/BPref ``reward_model.py``): oracle,
stochastic (Boltzmann), mistake, skip, equal and myopic, and :class:`BPrefTeacher` combines them
in B-Pref's order.

A teacher needs nothing from the rest of :mod:`rewardsmith.preference`: it is given two arrays of
per-step true rewards, ``left_rewards`` and ``right_rewards`` of shape ``(N, L)`` (N pairs of
segments of L steps; a 1-D ``(N,)`` array is read as N one-step segments), and returns ``(N,)``
float labels.

Label convention (the same as :mod:`rewardsmith.preference`'s batches):

* ``1.0`` -- the LEFT segment is preferred,
* ``0.0`` -- the right segment is preferred,
* ``0.5`` -- the two are equally preferable (a tie),
* ``NaN`` -- the teacher skipped the query (drop the pair, do not train on it).

This is the OPPOSITE of B-Pref, whose label ``1`` means the *second* segment is preferred
(``labels = 1 * (sum_r_1 < sum_r_2)``), ``-1`` marks "equal", and skipped queries are removed
from the batch rather than marked. Convert with ``1 - bpref_label`` (and ``-1`` -> ``0.5``).

Two deliberate departures from B-Pref, both documented where they apply:

* The Boltzmann teacher divides the return difference by a return *scale* (by default the range,
  max - min, of the returns in the queried batch) before multiplying by ``beta``. B-Pref uses
  ``softmax(beta * [R_1, R_2])`` on raw summed returns, so the same ``beta`` is near-deterministic
  on an environment with returns in the hundreds and near-random on one with returns below one
  (the pitfall reported in imitation #821). With the scale, ``beta`` means the same thing on every
  task: a pair whose returns differ by the whole range is labelled left with ``sigmoid(beta)``,
  and multiplying every reward by 1000 changes nothing.
* An exact tie (``R_l == R_r``) is labelled ``0.5`` by the oracle, not "first preferred".
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "TEACHER_KINDS",
    "BPrefTeacher",
    "ScriptedTeacher",
    "Teacher",
    "oracle_labels",
    "preference_accuracy",
    "segment_returns",
]

TEACHER_KINDS = ("oracle", "boltzmann", "mistake", "skip", "equal", "myopic")
_ALIASES = {"stochastic": "boltzmann", "noisy": "boltzmann", "rational": "oracle"}


@runtime_checkable
class Teacher(Protocol):
    """Anything that labels pairs of segments from their per-step true rewards.

    ``label(left_rewards, right_rewards)`` takes two ``(N, L)`` arrays and returns ``(N,)`` float
    labels: 1.0 = left preferred, 0.0 = right preferred, 0.5 = equal, NaN = skipped. (B-Pref uses
    the opposite convention: its 1 means the second segment is preferred.)
    """

    def label(self, left_rewards: np.ndarray, right_rewards: np.ndarray) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------------
# helpers


def _as_pairs(left_rewards: np.ndarray, right_rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    left = np.asarray(left_rewards, dtype=np.float64)
    right = np.asarray(right_rewards, dtype=np.float64)
    if left.ndim == 1:
        left = left[:, None]
    if right.ndim == 1:
        right = right[:, None]
    if left.ndim != 2 or right.ndim != 2:
        raise ValueError(
            "teachers take per-step rewards of shape (N, L) for each side; "
            f"got left {np.shape(left_rewards)} and right {np.shape(right_rewards)}"
        )
    if left.shape != right.shape:
        raise ValueError(
            f"left and right rewards must have the same shape (N pairs x L steps); "
            f"got {left.shape} and {right.shape}"
        )
    if not (np.all(np.isfinite(left)) and np.all(np.isfinite(right))):
        raise ValueError("true rewards must be finite (found NaN or inf in a segment)")
    return left, right


def segment_returns(rewards: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Per-segment returns of an ``(N, L)`` reward array, step ``t`` weighted by ``gamma**(L-1-t)``.

    ``gamma = 1`` is the plain sum. ``gamma < 1`` is B-Pref's myopic teacher: the LAST step has
    weight 1 and earlier steps are discounted, so recent behaviour matters more. (B-Pref
    multiplies ``r[:, :i+1]`` by gamma for ``i in range(L-1)``, which gives exactly these weights.)
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    if gamma == 1.0:
        return r.sum(axis=1)
    length = r.shape[1]
    weights = float(gamma) ** np.arange(length - 1, -1, -1, dtype=np.float64)
    return r @ weights


def oracle_labels(left_rewards: np.ndarray, right_rewards: np.ndarray) -> np.ndarray:
    """The perfectly rational labels: 1.0 where the left return is larger, 0.0 where smaller,
    0.5 on exact ties."""
    left, right = _as_pairs(left_rewards, right_rewards)
    return _sign_labels(left.sum(axis=1) - right.sum(axis=1))


def _sign_labels(diff: np.ndarray) -> np.ndarray:
    return np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _check_prob(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return value


def _check_gamma(value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"gamma must be in (0, 1] (1 = not myopic), got {value}")
    return value


def _check_scale(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"return_scale must be a positive finite number (or None), got {value}")
    return value


def _batch_range(*returns: np.ndarray) -> tuple[float, float]:
    allr = np.concatenate([np.ravel(r) for r in returns])
    if allr.size == 0:
        return 0.0, 0.0
    return float(allr.min()), float(allr.max())


def _simulate(
    left: np.ndarray,
    right: np.ndarray,
    rng: np.random.Generator,
    *,
    beta: float | None,
    gamma: float,
    eps: float,
    skip_threshold: float | None,
    equal_threshold: float | None,
    scale: float | None,
) -> np.ndarray:
    """B-Pref's ``SimTeacher.get_label`` pipeline in rewardsmith's label convention.

    Order (as B-Pref): skip on plain returns -> "equal" margin on plain returns -> compare the
    (myopically discounted) returns, rationally or Boltzmann -> flip with prob ``eps`` -> set
    the equal pairs to 0.5 (a tie is never flipped). Skipped pairs are NaN, not removed.
    ``scale`` is the Boltzmann temperature's return scale; None = range of this batch's
    (discounted) returns.
    """
    n = left.shape[0]
    ret_l, ret_r = left.sum(axis=1), right.sum(axis=1)
    skipped = np.zeros(n, dtype=bool)
    if skip_threshold is not None:
        # B-Pref keeps a query only when max(R_1, R_2) > threshold.
        skipped = np.maximum(ret_l, ret_r) <= skip_threshold
    equal = np.zeros(n, dtype=bool)
    if equal_threshold is not None:
        equal = np.abs(ret_l - ret_r) < equal_threshold

    if gamma != 1.0:
        ret_l, ret_r = segment_returns(left, gamma), segment_returns(right, gamma)
    diff = ret_l - ret_r
    if beta is None:
        labels = _sign_labels(diff)
    else:
        if scale is None:
            # The range over the pairs actually asked (skipped ones excluded), as B-Pref's
            # teacher never sees skipped queries.
            kept = ~skipped
            lo, hi = _batch_range(ret_l[kept], ret_r[kept])
            scale = hi - lo
        p_left = _sigmoid(beta * diff / scale) if scale > 0 else np.full(n, 0.5)
        labels = (rng.random(n) < p_left).astype(np.float64)
    if eps > 0:
        flip = rng.random(n) < eps
        labels = np.where(flip, 1.0 - labels, labels)  # 0.5 stays 0.5
    labels[equal] = 0.5
    labels[skipped] = np.nan
    return labels


# ----------------------------------------------------------------------------------------------
# teachers


class ScriptedTeacher:
    """One of B-Pref's simulated teachers, chosen by ``kind``.

    Kinds (``R_l``, ``R_r`` = summed true rewards of the left and right segment):

    * ``"oracle"`` -- 1.0 if ``R_l > R_r``, 0.0 if ``R_l < R_r``, 0.5 on an exact tie.
    * ``"boltzmann"`` (alias ``"stochastic"``, ``"noisy"``) -- left with probability
      ``sigmoid(beta * (R_l - R_r) / scale)``, where ``scale`` is ``return_scale`` if given,
      else the range (max - min) of all segment returns in the queried batch. Scaling keeps
      ``beta`` meaningful whatever the reward magnitude (B-Pref applies ``beta`` to raw returns;
      see the module docstring). A batch whose returns are all equal gets 0.5 probability.
      Note the per-batch scale makes a pair's probability depend on the other pairs asked with
      it; pass a fixed ``return_scale`` when that matters.
    * ``"mistake"`` -- the oracle's label flipped with probability ``eps_mistake`` (ties stay 0.5).
    * ``"skip"`` -- the oracle, but NaN (skipped) when ``max(R_l, R_r) <= skip_threshold`` (B-Pref
      keeps a query only when its larger return exceeds the threshold: both segments are bad).
    * ``"equal"`` -- the oracle, but 0.5 when ``|R_l - R_r| < equal_threshold``.
    * ``"myopic"`` -- the oracle on returns where step ``t`` of ``L`` is weighted
      ``gamma_myopic ** (L - 1 - t)``: the last steps count most.

    ``skip_threshold`` and ``equal_threshold`` are in return units (see :class:`BPrefTeacher`
    for thresholds relative to the return range). Draws come from ``np.random.default_rng(seed)``,
    advanced by every call, so a teacher built with the same seed and asked the same sequence of
    queries gives the same labels.
    """

    def __init__(
        self,
        kind: str = "oracle",
        *,
        beta: float = 10.0,
        eps_mistake: float = 0.1,
        skip_threshold: float = 0.0,
        equal_threshold: float = 0.0,
        gamma_myopic: float = 0.9,
        return_scale: float | None = None,
        seed: int | None = None,
    ) -> None:
        kind = _ALIASES.get(kind, kind)
        if kind not in TEACHER_KINDS:
            raise ValueError(
                f"unknown teacher kind {kind!r}; known: {', '.join(TEACHER_KINDS)} "
                "(or 'stochastic'/'noisy' for boltzmann)"
            )
        beta = float(beta)
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        self.kind = kind
        self.beta = beta
        self.eps_mistake = _check_prob("eps_mistake", eps_mistake)
        self.skip_threshold = float(skip_threshold)
        self.equal_threshold = float(equal_threshold)
        if self.equal_threshold < 0:
            raise ValueError(f"equal_threshold must be >= 0, got {equal_threshold}")
        self.gamma_myopic = _check_gamma(gamma_myopic)
        self.return_scale = _check_scale(return_scale)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def label(self, left_rewards: np.ndarray, right_rewards: np.ndarray) -> np.ndarray:
        """Labels ``(N,)``: 1.0 = left preferred, 0.0 = right, 0.5 = equal, NaN = skipped."""
        left, right = _as_pairs(left_rewards, right_rewards)
        k = self.kind
        return _simulate(
            left,
            right,
            self.rng,
            beta=self.beta if k == "boltzmann" else None,
            gamma=self.gamma_myopic if k == "myopic" else 1.0,
            eps=self.eps_mistake if k == "mistake" else 0.0,
            skip_threshold=self.skip_threshold if k == "skip" else None,
            equal_threshold=self.equal_threshold if k == "equal" else None,
            scale=self.return_scale,
        )

    __call__ = label

    def __repr__(self) -> str:
        return f"ScriptedTeacher(kind={self.kind!r}, seed={self.seed!r})"


class BPrefTeacher:
    """All of B-Pref's teacher behaviours at once, applied in B-Pref's order.

    1. skip: a query is skipped (NaN) when ``max(R_l, R_r) <= lo + skip_frac * (hi - lo)``;
    2. equal: a pair is "equal" when ``|R_l - R_r| < equal_frac * (hi - lo)``;
    3. compare the myopic returns (step ``t`` weighted ``gamma ** (L-1-t)``): rationally when
       ``beta`` is None (or ``<= 0``, B-Pref's "off"), else Boltzmann with
       ``P(left) = sigmoid(beta * (R_l - R_r) / scale)``, ``scale`` the range of the compared
       (discounted) returns of the kept pairs, or ``return_range``'s width when given;
    4. mistake: flip with probability ``eps``;
    5. the "equal" pairs are set to 0.5 (after the flip, as in B-Pref).

    ``lo, hi`` is ``return_range`` when given, else the min and max of the batch's segment
    returns. B-Pref sets its absolute thresholds from the mean episode return scaled to the
    segment length; fractions of the return range do the same job without knowing the episode
    length, and work when returns are negative. With ``eps = 0``,
    ``gamma = 1``, ``beta = None`` and ``skip_frac = equal_frac = None`` (the defaults) it is the
    oracle. Note ``skip_frac = 0`` is not "off": it still skips pairs whose both returns equal the
    batch minimum; ``None`` never skips.

    Labels: 1.0 = left preferred, 0.0 = right, 0.5 = equal, NaN = skipped (B-Pref's opposite).
    """

    def __init__(
        self,
        beta: float | None = None,
        gamma: float = 1.0,
        eps: float = 0.0,
        skip_frac: float | None = None,
        equal_frac: float | None = None,
        *,
        return_range: tuple[float, float] | None = None,
        seed: int | None = None,
    ) -> None:
        if beta is not None:
            beta = float(beta)
            if not math.isfinite(beta):
                raise ValueError(f"beta must be finite or None, got {beta}")
            if beta <= 0:
                beta = None  # B-Pref: teacher_beta <= 0 means the rational teacher
        self.beta = beta
        self.gamma = _check_gamma(gamma)
        self.eps = _check_prob("eps", eps)
        self.skip_frac = None if skip_frac is None else _check_prob("skip_frac", skip_frac)
        self.equal_frac = None if equal_frac is None else _check_prob("equal_frac", equal_frac)
        if return_range is not None:
            lo, hi = (float(v) for v in return_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"return_range must be (lo, hi) with lo < hi, got {return_range}")
            return_range = (lo, hi)
        self.return_range = return_range
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def thresholds(self, left_rewards: np.ndarray, right_rewards: np.ndarray) -> tuple[float | None, float | None]:
        """The absolute (skip, equal) thresholds this teacher would use on this batch."""
        left, right = _as_pairs(left_rewards, right_rewards)
        return self._thresholds(left, right)

    def _thresholds(self, left: np.ndarray, right: np.ndarray) -> tuple[float | None, float | None]:
        if self.return_range is not None:
            lo, hi = self.return_range
        else:
            lo, hi = _batch_range(left.sum(axis=1), right.sum(axis=1))
        width = hi - lo
        skip = None if self.skip_frac is None else lo + self.skip_frac * width
        equal = None if self.equal_frac is None else self.equal_frac * width
        return skip, equal

    def label(self, left_rewards: np.ndarray, right_rewards: np.ndarray) -> np.ndarray:
        """Labels ``(N,)``: 1.0 = left preferred, 0.0 = right, 0.5 = equal, NaN = skipped."""
        left, right = _as_pairs(left_rewards, right_rewards)
        skip, equal = self._thresholds(left, right)
        scale = None if self.return_range is None else self.return_range[1] - self.return_range[0]
        return _simulate(
            left,
            right,
            self.rng,
            beta=self.beta,
            gamma=self.gamma,
            eps=self.eps,
            skip_threshold=skip,
            equal_threshold=equal,
            scale=scale,
        )

    __call__ = label

    def __repr__(self) -> str:
        return (
            f"BPrefTeacher(beta={self.beta!r}, gamma={self.gamma!r}, eps={self.eps!r}, "
            f"skip_frac={self.skip_frac!r}, equal_frac={self.equal_frac!r}, seed={self.seed!r})"
        )


def preference_accuracy(labels: np.ndarray, true_labels: np.ndarray) -> float:
    """Share of pairs where ``labels`` pick the same side as ``true_labels``.

    Both may be hard labels (1/0/0.5/NaN) or probabilities of "left preferred" (compared with
    0.5). Pairs where either side is NaN (skipped) or exactly 0.5 (a tie: no side to agree on) are
    ignored. Returns NaN when no pair is left.
    """
    a = np.asarray(labels, dtype=np.float64).ravel()
    b = np.asarray(true_labels, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labels and true_labels must have the same length, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b) & (a != 0.5) & (b != 0.5)
    if not keep.any():
        return float("nan")
    return float(np.mean((a[keep] > 0.5) == (b[keep] > 0.5)))
