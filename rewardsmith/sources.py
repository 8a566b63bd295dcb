"""One batch reward protocol for everything that produces a reward.

A *reward source* turns a batch of transitions into rewards::

    total (n,), components (n, C) = source.compute(Transitions(prev_state, action, state,
                                                               terminated, truncated))

with its component names in :attr:`RewardSource.components`. Reward programs, potential-based
shaping, combinations, intrinsic bonuses and learned reward nets all implement it; the VecEnv
wrapper (:class:`~rewardsmith.wrappers.RewardVecEnv`) keeps each env's previous state and applies
any source with one call per step, and :func:`~rewardsmith.wrappers.relabel` applies the same
source to stored transitions.

``terminated`` (a true end: the episode cannot go on) is kept apart from ``truncated`` (a time
limit), since e.g. a shaping potential is zero only at a true end. States are flat reward states
in the task's layout (``(n, task.state_size)`` float64, as in ``info["reward_state"]``; see
:mod:`rewardsmith.state`).

A :class:`~rewardsmith.program.RewardProgram` stays a function of the current state;
:class:`ProgramSource` adds the transition around it (and :func:`as_source` wraps one for you).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rewardsmith.tasks import TaskSpec


@dataclass
class Transitions:
    """A batch of ``n`` transitions ``prev_state --action--> state``.

    Attributes:
        prev_state: ``(n, S)`` reward states before the step (after an auto-reset: the reset state).
        action: ``(n, A)`` actions taken, or None when not known (the reward state of most tasks
            holds the action as a variable anyway).
        state: ``(n, S)`` reward states after the step (the terminal state at an episode's end).
        terminated: ``(n,)`` bool, the episode ended for real at this step.
        truncated: ``(n,)`` bool, the episode was cut by a time limit at this step (never both).
    """

    prev_state: np.ndarray
    action: np.ndarray | None
    state: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    @property
    def n(self) -> int:
        """The number of transitions."""
        return int(self.state.shape[0])

    @property
    def done(self) -> np.ndarray:
        """``terminated | truncated``: the episode ended at this step."""
        return self.terminated | self.truncated

    @classmethod
    def from_states(cls, state: np.ndarray, prev_state: np.ndarray | None = None, action: np.ndarray | None = None,
                    terminated: np.ndarray | None = None, truncated: np.ndarray | None = None) -> Transitions:
        """Transitions from stored arrays; missing pieces get neutral defaults.

        Without ``prev_state`` each transition's previous state is its own state (right for any
        source that reads only the current state, as reward programs do; a source that reads the
        previous state needs it given). ``terminated`` and ``truncated`` default to all False.
        """
        state = np.ascontiguousarray(state, dtype=np.float64)
        n = state.shape[0]
        prev = state if prev_state is None else np.ascontiguousarray(prev_state, dtype=np.float64)
        term = np.zeros(n, dtype=bool) if terminated is None else np.asarray(terminated, dtype=bool)
        trunc = np.zeros(n, dtype=bool) if truncated is None else np.asarray(truncated, dtype=bool)
        t = cls(prev, action, state, term, trunc)
        t.validate()
        return t

    def validate(self) -> None:
        """Raise ValueError unless the arrays have matching shapes."""
        n = self.state.shape[0] if self.state.ndim == 2 else -1
        if n < 0:
            raise ValueError(f"state must be (n, S), got shape {self.state.shape}")
        if self.prev_state.shape != self.state.shape:
            raise ValueError(f"prev_state has shape {self.prev_state.shape}, state {self.state.shape}")
        for name in ("terminated", "truncated"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if self.action is not None and len(self.action) != n:
            raise ValueError(f"action has {len(self.action)} rows, state {n}")


@runtime_checkable
class RewardSource(Protocol):
    """What produces rewards: a batch function over :class:`Transitions`.

    Attributes:
        task: the task whose state layout the source reads.
        components: component names, in the column order of :meth:`compute`'s output.

    A source may also expose ``nonfinite`` (an int: values it replaced by 0 so far, as
    :class:`ProgramSource` does); the wrappers and :class:`~rewardsmith.train.Trainer` report it
    when present.
    """

    task: TaskSpec

    @property
    def components(self) -> list[str]:
        """Component names."""
        ...

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(total (n,), components (n, C))`` for the batch, written into ``out`` when given."""
        ...


class ProgramSource:
    """A :class:`~rewardsmith.program.RewardProgram` as a reward source (a function of ``t.state``).

    One compiled call per batch, with the program's runtime guard (NaN/inf and exceptions become 0).
    The guard's counts are kept *per source*, in :attr:`counters` (``[non-finite totals, rows that
    raised]``; a row that raised is counted in both), so two trainings that reuse one program
    object each report only their own. The program's own running totals
    (``program.nonfinite_count``, ``program.error_count``) advance as well.
    """

    def __init__(self, program: Any) -> None:
        self.program = program
        self.task: TaskSpec = program.task
        self._components = list(program.components)
        self._size = self.task.state_size
        self._run = program.compiled.run
        self.counters = np.zeros(2, dtype=np.int64)
        self._scratch = np.zeros(2, dtype=np.int64)

    @property
    def components(self) -> list[str]:
        """The program's component names."""
        return self._components

    @property
    def key(self) -> str:
        """The program's content key (how results name the reward)."""
        return str(self.program.key)

    @property
    def nonfinite(self) -> int:
        """Reward values replaced by 0 through this source so far (NaN/inf totals, incl. rows that raised)."""
        return int(self.counters[0])

    @property
    def errors(self) -> int:
        """Rows whose program call raised through this source so far (also counted in :attr:`nonfinite`)."""
        return int(self.counters[1])

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The program over ``t.state``; ``out`` is an optional preallocated ``(total, components)``."""
        states = t.state
        if states.dtype != np.float64 or not states.flags.c_contiguous:
            states = np.ascontiguousarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] != self._size:
            raise ValueError(f"states must have shape (n, {self._size}), got {states.shape}")
        if out is None:
            n = states.shape[0]
            out = (np.empty(n), np.empty((n, len(self._components))))
        scratch = self._scratch
        scratch[0] = scratch[1] = 0
        self._run(states, out[0], out[1], scratch)  # large batches go parallel
        if scratch[0]:  # a row that raised is non-finite too, so this catches both
            self.counters += scratch
            self.program.counters += scratch
        return out

    def __repr__(self) -> str:
        return f"ProgramSource({self.task.name}, {self.key[:12]}, components={self._components})"


def as_source(reward: Any) -> RewardSource:
    """A reward source from a :class:`~rewardsmith.program.RewardProgram` (wrapped in a
    :class:`ProgramSource`) or a reward source (returned as is); TypeError otherwise."""
    from rewardsmith.program import RewardProgram

    if isinstance(reward, RewardProgram):
        return ProgramSource(reward)
    if callable(getattr(reward, "compute", None)) and hasattr(reward, "components") and hasattr(reward, "task"):
        return reward  # type: ignore[no-any-return]
    raise TypeError(f"not a reward source or RewardProgram: {type(reward).__name__} "
                    "(a source needs .task, .components and .compute(transitions, out=None))")


def source_nonfinite(source: Any) -> int:
    """The source's count of replaced values (``source.nonfinite``), 0 when it keeps none."""
    return int(getattr(source, "nonfinite", 0) or 0)


def source_label(source: Any) -> str:
    """How results name a source: its ``key`` when it has one, else its class name."""
    key = getattr(source, "key", None)
    return str(key) if key else type(source).__name__


__all__ = ["ProgramSource", "RewardSource", "Transitions", "as_source", "source_label", "source_nonfinite"]
