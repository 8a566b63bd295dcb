"""Which pairs of segments to ask the teacher about: uniform, ensemble disagreement, entropy.

As in B-Pref (Lee et al. 2021) and imitation's active selection: ``oversample * n`` candidate
pairs are drawn uniformly from the pool of segments, scored with the current reward model, and
the ``n`` best-scored are asked.

* ``uniform`` -- the first ``n`` candidates (no model needed);
* ``disagreement`` -- the std over ensemble members of ``P(left preferred)``: pairs the members
  disagree on (B-Pref's ``disagreement_sampling``);
* ``entropy`` -- the entropy of the ensemble-mean ``P(left preferred)``: pairs the model is
  least sure about (B-Pref's ``entropy_sampling``).

Without a model (before the first fit) every method falls back to uniform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardsmith.preference.segments import Segment, features

SELECTIONS = ("uniform", "disagreement", "entropy")


def _member_probs(model: Any, left: Sequence[Segment], right: Sequence[Segment], use: str) -> np.ndarray:
    """``(k, N)``: each member's probability that the left segment is preferred."""
    lf = np.stack([features(s, use) for s in left])
    rf = np.stack([features(s, use) for s in right])
    diff = model.predict_members(lf).sum(axis=-1) - model.predict_members(rf).sum(axis=-1)
    return 1.0 / (1.0 + np.exp(-np.clip(diff, -50, 50)))


def pair_scores(model: Any, left: Sequence[Segment], right: Sequence[Segment], method: str,
                use: str = "state") -> np.ndarray:
    """``(N,)`` how informative each pair is by ``method`` (higher = ask first)."""
    if method not in SELECTIONS:
        raise ValueError(f"unknown query selection {method!r}: use one of {', '.join(SELECTIONS)}")
    if method == "uniform" or model is None:
        return np.zeros(len(left))
    p = _member_probs(model, left, right, use)
    if method == "disagreement":
        return p.std(axis=0)
    q = np.clip(p.mean(axis=0), 1e-12, 1 - 1e-12)
    return -(q * np.log(q) + (1 - q) * np.log(1 - q))


def candidate_pairs(pool: Sequence[Segment], m: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``m`` random pairs of distinct pool indices (with replacement across pairs)."""
    if len(pool) < 2:
        raise ValueError(f"need at least 2 segments to form a pair, the pool has {len(pool)}")
    i = rng.integers(0, len(pool), size=m)
    j = (i + rng.integers(1, len(pool), size=m)) % len(pool)  # never i
    return list(zip(i.tolist(), j.tolist()))


def select_queries(pool: Sequence[Segment], n: int, *, model: Any = None, method: str = "disagreement",
                   oversample: int = 10, rng: np.random.Generator | int | None = None,
                   use: str = "state") -> tuple[list[Segment], list[Segment], np.ndarray]:
    """``n`` pairs from ``pool``: ``(left segments, right segments, their scores)``.

    ``oversample * n`` uniform candidate pairs are scored (:func:`pair_scores`) and the ``n``
    highest kept (uniform: the first ``n``). Ties in score keep the candidates' random order. No
    pair is asked twice (either way round); a pool with fewer than ``n`` distinct pairs gives all it has.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if oversample < 1:
        raise ValueError(f"oversample must be at least 1, got {oversample}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    drawn = candidate_pairs(pool, n * (1 if method == "uniform" else int(oversample)), rng)
    pairs = list(dict.fromkeys((min(i, j), max(i, j)) for i, j in drawn))  # each pair once, in draw order
    if len(pairs) < n:  # a small pool: every distinct pair it has, in a random order
        every = [(i, j) for i in range(len(pool)) for j in range(i + 1, len(pool))]
        pairs += [every[k] for k in rng.permutation(len(every)) if every[k] not in set(pairs)]
    pairs = [(i, j) if rng.random() < 0.5 else (j, i) for i, j in pairs]  # which side is left: random
    left = [pool[i] for i, _ in pairs]
    right = [pool[j] for _, j in pairs]
    scores = pair_scores(model, left, right, method, use)
    keep = np.argsort(-scores, kind="stable")[:n]
    return [left[k] for k in keep], [right[k] for k in keep], scores[keep]


def query_schedule(total: int, updates: int, first: float = 0.1, kind: str = "constant") -> list[int]:
    """How many queries each update asks: ``updates + 1`` numbers summing to ``total``.

    Entry 0 is asked before the agent trains (on random-policy segments): ``first`` of the total
    (imitation asks 10% up front). The rest is spread over the ``updates`` reward updates evenly
    (``"constant"``, PEBBLE's fixed batch per feedback session) or in proportion to ``1 / (1 + k)``
    (``"hyperbolic"``, imitation's default: more early, when the reward is most wrong).
    """
    total, updates = int(total), int(updates)
    if total < 1 or updates < 0:
        raise ValueError(f"need total >= 1 and updates >= 0, got {total}, {updates}")
    if not 0 <= first <= 1:
        raise ValueError(f"first must be in [0, 1], got {first}")
    head = total if updates == 0 else max(1, int(round(total * first)))
    rest = total - head
    if kind == "constant":
        weights = np.ones(updates)
    elif kind == "hyperbolic":
        weights = 1.0 / (1.0 + np.arange(updates))
    else:
        raise ValueError(f"unknown query schedule {kind!r}: use constant or hyperbolic")
    if updates == 0:
        return [head]
    raw = rest * weights / weights.sum()
    counts = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - counts), kind="stable")[: rest - counts.sum()]:
        counts[k] += 1
    return [head, *counts.tolist()]


__all__ = ["SELECTIONS", "candidate_pairs", "pair_scores", "query_schedule", "select_queries"]
