"""Trajectory segments and batches of pairwise preferences over them.

A :class:`Segment` always holds its *own copy* of the states (and actions) it covers: never a
view into the whole trajectory it was cut from. A view keeps the whole trajectory alive for as
long as the segment lives, which is how imitation's fragments made memory grow with every query
(imitation issue #842). Here ``segment.states.base is None`` always holds.

Label convention of :class:`PreferenceBatch`: ``label = 1`` means the *left* segment is
preferred, ``0`` the right one, ``0.5`` a tie ("equally good"); any value in ``[0, 1]`` is a soft
label (B-Pref uses the opposite convention; convert with ``1 - label``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

USES = ("state", "state_action")


def _own(x: np.ndarray | None, ndim: int, name: str) -> np.ndarray | None:
    """A fresh, C-contiguous float64 copy of ``x`` (never a view), checked to have ``ndim`` dims."""
    if x is None:
        return None
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1 and ndim == 2:
        a = a.reshape(-1, 1)
    a = np.array(a, dtype=np.float64, copy=True, order="C")  # owns its data: a.base is None
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


@dataclass
class Segment:
    """A piece of one trajectory, ``L`` consecutive steps.

    Attributes:
        states: ``(L, S)`` float64 reward states (a copy; 1-D input becomes ``(L, 1)``).
        actions: ``(L, A)`` float64 actions (a copy), or None.
        returns: the segment's true return (sum of the true reward over its steps), NaN if unknown
            (filled from ``rewards`` when those are given and ``returns`` is not).
        fitness: a task-level quality score of the segment, if known (None otherwise).
        rewards: ``(L,)`` true per-step rewards (a copy), or None: what scripted teachers compare.
        snapshots: ``(L, K)`` simulator snapshots (a copy; see :mod:`rewardsmith.preference.render`),
            or None: what a human teacher's GIFs are rendered from.
        origin: where the segment comes from (e.g. ``"random"``, ``"iter3"``, a candidate's name).
    """

    states: np.ndarray
    actions: np.ndarray | None = None
    returns: float = float("nan")
    fitness: float | None = None
    rewards: np.ndarray | None = None
    snapshots: np.ndarray | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        self.states = _own(self.states, 2, "states")  # type: ignore[assignment]
        self.actions = _own(self.actions, 2, "actions")
        self.snapshots = _own(self.snapshots, 2, "snapshots")
        if self.rewards is not None:
            self.rewards = np.array(np.asarray(self.rewards, dtype=np.float64).reshape(-1), copy=True)
        for name in ("actions", "snapshots", "rewards"):
            a = getattr(self, name)
            if a is not None and len(a) != len(self.states):
                raise ValueError(f"{name} has {len(a)} rows, states {len(self.states)}")
        if math.isnan(float(self.returns)) and self.rewards is not None:
            self.returns = float(self.rewards.sum())
        self.returns = float(self.returns)
        if self.fitness is not None:
            self.fitness = float(self.fitness)

    @property
    def length(self) -> int:
        """``L``, the number of steps."""
        return int(self.states.shape[0])

    def __len__(self) -> int:
        return self.length


def features(segment: Segment, use: str = "state") -> np.ndarray:
    """The reward net's input for each step of a segment: ``(L, D)`` float64.

    ``use="state"``: the states (``D = S``); ``use="state_action"``: states and actions side by
    side (``D = S + A``; the segment must have actions).
    """
    if use == "state":
        return segment.states
    if use == "state_action":
        if segment.actions is None:
            raise ValueError("use='state_action' needs a segment with actions")
        return np.concatenate([segment.states, segment.actions], axis=1)
    raise ValueError(f"use must be one of {USES}, got {use!r}")


def sample_segments(states: np.ndarray, length: int, n: int, rng: np.random.Generator | int | None = None,
                    actions: np.ndarray | None = None, rewards: np.ndarray | None = None,
                    fitness: float | None = None, snapshots: np.ndarray | None = None,
                    origin: str = "") -> list[Segment]:
    """``n`` segments of ``length`` consecutive steps, at uniform random starts, from ONE trajectory.

    Args:
        states: ``(T, S)`` (or ``(T,)``) states of one trajectory; ``T >= length``.
        length: steps per segment.
        n: number of segments (starts are drawn with replacement, so segments may overlap).
        rng: a numpy Generator or a seed.
        actions: optional ``(T, A)`` actions, cut alongside.
        rewards: optional ``(T,)`` true per-step rewards, cut alongside (a segment's ``returns`` is
            their sum over it).
        fitness: optional value given to every segment's ``fitness``.
        snapshots: optional ``(T, K)`` simulator snapshots, cut alongside.
        origin: given to every segment.

    Every segment holds copies, never views of ``states``/``actions``.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    st = np.asarray(states, dtype=np.float64)
    if st.ndim == 1:
        st = st.reshape(-1, 1)
    if st.ndim != 2:
        raise ValueError(f"states must be (T, S) for one trajectory, got shape {st.shape}")
    T = st.shape[0]
    if length < 1 or length > T:
        raise ValueError(f"length must be in [1, {T}] for a trajectory of {T} steps, got {length}")
    act = None if actions is None else np.asarray(actions, dtype=np.float64)
    rew = None if rewards is None else np.asarray(rewards, dtype=np.float64).reshape(-1)
    snap = None if snapshots is None else np.asarray(snapshots, dtype=np.float64)
    for name, a in (("actions", act), ("rewards", rew), ("snapshots", snap)):
        if a is not None and len(a) != T:
            raise ValueError(f"{name} has {len(a)} rows, states {T}")
    starts = rng.integers(0, T - length + 1, size=int(n))
    out = []
    for s in starts:
        sl = slice(int(s), int(s) + length)
        out.append(Segment(st[sl], None if act is None else act[sl],
                           float(rew[sl].sum()) if rew is not None else float("nan"), fitness,
                           rewards=None if rew is None else rew[sl], snapshots=None if snap is None else snap[sl],
                           origin=origin))
    return out


@dataclass
class PreferenceBatch:
    """``N`` labelled comparisons of segment pairs, as model inputs.

    Attributes:
        left: ``(N, L, D)`` features of the left segments.
        right: ``(N, L, D)`` features of the right segments.
        label: ``(N,)`` in ``[0, 1]``: 1 = left preferred, 0 = right preferred, 0.5 = tie.
    """

    left: np.ndarray
    right: np.ndarray
    label: np.ndarray

    def __post_init__(self) -> None:
        self.left = np.array(self.left, dtype=np.float64, copy=True)
        self.right = np.array(self.right, dtype=np.float64, copy=True)
        self.label = np.array(self.label, dtype=np.float64, copy=True).reshape(-1)
        if self.left.ndim != 3 or self.left.shape != self.right.shape:
            raise ValueError(f"left and right must be equal (N, L, D) arrays, got {self.left.shape} "
                             f"and {self.right.shape}")
        if self.label.shape != (self.left.shape[0],):
            raise ValueError(f"label must have shape ({self.left.shape[0]},), got {self.label.shape}")
        if not np.all(np.isfinite(self.label)) or self.label.min(initial=0) < 0 or self.label.max(initial=1) > 1:
            raise ValueError("labels must lie in [0, 1] (1 = left preferred, 0.5 = tie)")

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def input_dim(self) -> int:
        """``D``, the feature size per step."""
        return int(self.left.shape[2])

    def subset(self, idx: np.ndarray | Sequence[int] | slice) -> PreferenceBatch:
        """The comparisons at ``idx`` (a copy)."""
        return PreferenceBatch(self.left[idx], self.right[idx], self.label[idx])

    @classmethod
    def from_segments(cls, left: Sequence[Segment], right: Sequence[Segment], label: np.ndarray | Sequence[float],
                      use: str = "state") -> PreferenceBatch:
        """A batch from paired segments (all of one length) and their labels."""
        if len(left) != len(right):
            raise ValueError(f"{len(left)} left segments but {len(right)} right ones")
        if not left:
            raise ValueError("no segments")
        return cls(np.stack([features(s, use) for s in left]), np.stack([features(s, use) for s in right]),
                   np.asarray(label, dtype=np.float64))

    @classmethod
    def concat(cls, batches: Sequence[PreferenceBatch]) -> PreferenceBatch:
        """All comparisons of several batches (of one segment length and feature size)."""
        return cls(np.concatenate([b.left for b in batches]), np.concatenate([b.right for b in batches]),
                   np.concatenate([b.label for b in batches]))


__all__ = ["PreferenceBatch", "Segment", "features", "sample_segments"]
