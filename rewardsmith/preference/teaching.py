"""Teachers that compare whole :class:`~rewardsmith.preference.segments.Segment` objects.

A :class:`~rewardsmith.preference.teachers.Teacher` (scripted, B-Pref style) only sees per-step
true rewards. The PbRL loop and ICPL ask a :class:`SegmentTeacher` instead, which is given the
segments themselves, so that a human can watch them (GIFs rendered from their snapshots) and an
LLM can read them (text summaries of the task's variables):

* :class:`RewardTeacher` -- any scripted teacher, fed each segment's ``rewards`` (its ``returns``
  as a one-step segment when it has no per-step rewards);
* ``rewardsmith.preference.human.HumanTeacher`` -- GIFs side by side, answers from the terminal;
* ``rewardsmith.preference.llm_teacher.LLMTeacher`` -- through the coder protocol.

:func:`make_teacher` builds one by name (``scripted`` / ``human`` / ``llm``), as the CLI does.
Labels follow :mod:`rewardsmith.preference`: 1.0 = left preferred, 0.0 = right, 0.5 = equal,
NaN = skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rewardsmith.preference.segments import Segment
from rewardsmith.preference.teachers import BPrefTeacher, ScriptedTeacher, Teacher

TEACHER_NAMES = ("scripted", "human", "llm")


@runtime_checkable
class SegmentTeacher(Protocol):
    """Anything that labels pairs of segments: ``compare(left, right) -> (N,)`` float labels."""

    def compare(self, left: Sequence[Segment], right: Sequence[Segment]) -> np.ndarray: ...


def segment_rewards(segments: Sequence[Segment]) -> np.ndarray:
    """``(N, L)`` true per-step rewards of equally long segments (``(N, 1)`` returns when any lacks them)."""
    if segments and all(s.rewards is not None for s in segments) \
            and len({len(s.rewards) for s in segments}) == 1:  # type: ignore[arg-type]
        return np.stack([s.rewards for s in segments])  # type: ignore[misc]
    returns = np.array([s.returns for s in segments], dtype=np.float64)
    if np.isnan(returns).any():
        raise ValueError("a scripted teacher needs segments with true rewards or returns; some have neither")
    return returns.reshape(-1, 1)


class RewardTeacher:
    """A scripted :class:`~rewardsmith.preference.teachers.Teacher` as a :class:`SegmentTeacher`."""

    def __init__(self, teacher: Teacher | None = None) -> None:
        self.teacher = teacher if teacher is not None else ScriptedTeacher("oracle")

    def compare(self, left: Sequence[Segment], right: Sequence[Segment]) -> np.ndarray:
        if len(left) != len(right):
            raise ValueError(f"{len(left)} left segments but {len(right)} right ones")
        if not left:
            return np.zeros(0)
        return np.asarray(self.teacher.label(segment_rewards(left), segment_rewards(right)), dtype=np.float64)

    def __repr__(self) -> str:
        return f"RewardTeacher({self.teacher!r})"


def make_teacher(name: str | SegmentTeacher, task: Any = None, *, kind: str = "oracle", seed: int | None = None,
                 **kw: Any) -> SegmentTeacher:
    """A teacher by name.

    * ``"scripted"``: :class:`RewardTeacher` over ``ScriptedTeacher(kind, seed=seed, **kw)``
      (``kind="bpref"`` gives a :class:`~rewardsmith.preference.teachers.BPrefTeacher` with ``**kw``);
    * ``"human"``: ``HumanTeacher(task, **kw)`` (e.g. ``answers=`` the file answers are saved to);
    * ``"llm"``: ``LLMTeacher(task, **kw)`` (e.g. ``coder=``).

    An object with a ``compare`` method is returned as it is.
    """
    if not isinstance(name, str):
        if not callable(getattr(name, "compare", None)):
            raise TypeError(f"a teacher must be one of {TEACHER_NAMES} or have a compare() method, got {name!r}")
        return name
    if name == "scripted":
        if kind == "bpref":
            return RewardTeacher(BPrefTeacher(seed=seed, **kw))
        return RewardTeacher(ScriptedTeacher(kind, seed=seed, **kw))
    if name == "human":
        from rewardsmith.preference.human import HumanTeacher

        return HumanTeacher(task, **kw)
    if name == "llm":
        from rewardsmith.preference.llm_teacher import LLMTeacher

        return LLMTeacher(task, **kw)
    raise ValueError(f"unknown teacher {name!r}: use one of {', '.join(TEACHER_NAMES)}")


__all__ = ["TEACHER_NAMES", "RewardTeacher", "SegmentTeacher", "make_teacher", "segment_rewards"]
