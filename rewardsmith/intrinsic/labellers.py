"""Labellers for the ONI bonus (:mod:`rewardsmith.intrinsic.oni`): rate transitions in [0, 1].

A transition is shown to a labeller as text, :func:`describe_transition` (one line per reward-state
variable: its value after the step, its unit, its change over the step). :class:`CoderLabeller`
asks an LLM through any :class:`~rewardsmith.coders.Coder` (the prompt is ``prompts/oni_label.j2``);
:class:`OfflineLabeller` applies a rule to the states (the task's sparse reward by default), for
tests and for runs without an LLM.

A label is a float in [0, 1] (1: the step shows progress or interesting behaviour for the task) or
``None``: no label (the LLM's reply was unusable). A labeller never raises for a bad reply: it
counts it in :attr:`errors`, so training never stops for the labeller.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rewardsmith.coders.base import Coder, CoderError
from rewardsmith.prompting import render_prompt
from rewardsmith.state import split_state
from rewardsmith.tasks import TaskSpec, get_task

Label = float | None
_LIST = re.compile(r"\[[^\[\]]*\]")


def _fmt(x: np.ndarray | float, decimals: int, sign: bool = False) -> str:
    spec = f"{'+' if sign else ''}.{decimals}f"
    vals = np.round(np.atleast_1d(np.asarray(x, dtype=np.float64)), decimals) + 0.0  # no "-0.00"
    text = ", ".join(format(float(v), spec) for v in vals)
    return text if np.ndim(x) == 0 else f"[{text}]"


def describe_transition(task: TaskSpec, prev_state: np.ndarray | None, state: np.ndarray,
                        decimals: int = 2) -> str:
    """One line per variable: ``name = value unit (change +delta)``, values rounded to ``decimals``.

    Args:
        task: the task whose reward-state layout the flat states follow.
        prev_state: the ``(state_size,)`` state before the step, or None when unknown (the first
            step of an episode): the change is then ``n/a``.
        state: the ``(state_size,)`` state after the step.
        decimals: rounding; coarser rounding makes more transitions share a description (and a
            cached label).
    """
    now = split_state(task, np.asarray(state, dtype=np.float64))
    before = None if prev_state is None else split_state(task, np.asarray(prev_state, dtype=np.float64))
    lines = []
    for var in task.variables:
        unit = f" {var.unit}" if var.unit else ""
        change = "n/a" if before is None else _fmt(now[var.name] - before[var.name], decimals, sign=True)
        lines.append(f"{var.name} = {_fmt(now[var.name], decimals)}{unit} (change {change})")
    return "\n".join(lines)


@runtime_checkable
class Labeller(Protocol):
    """Rates transitions: one label in [0, 1] (or None: no label) per description.

    ``states`` (``(k, state_size)``, the states after each step) is passed too, for labellers
    that read numbers rather than text (:class:`OfflineLabeller`); an LLM labeller ignores it.
    Implementations are called from a worker thread and must never raise for a bad answer.
    """

    batch_size: int

    def label(self, descriptions: list[str], states: np.ndarray | None = None) -> list[Label]:
        ...


def parse_labels(text: str, n: int) -> list[float] | None:
    """The last JSON list of ``n`` numbers in ``text``, clipped to [0, 1]; None if there is none."""
    for match in reversed(_LIST.findall(text)):
        try:
            items = json.loads(match)
        except ValueError:
            continue
        if isinstance(items, list) and len(items) == n \
                and all(isinstance(v, (int, float)) and np.isfinite(v) for v in items):
            return [float(np.clip(v, 0.0, 1.0)) for v in items]
    return None


class CoderLabeller:
    """Labels transitions with an LLM behind a :class:`~rewardsmith.coders.Coder`.

    Descriptions are sent ``batch_size`` at a time, numbered, in one prompt
    (``prompts/oni_label.j2``); the reply must contain a JSON list with one number per transition.
    A reply without such a list (prose, a wrong count), a failed sample or a
    :class:`~rewardsmith.coders.CoderError` leaves that batch unlabelled (``None``) and adds one
    to :attr:`errors`; :attr:`last_error` says why.

    Attributes:
        requests: prompts sent to the coder; errors: prompts that gave no labels.
    """

    def __init__(self, coder: Coder, task: str | TaskSpec, batch_size: int = 16,
                 prompts_dir: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.coder, self.task, self.batch_size, self.prompts_dir = coder, get_task(task), batch_size, prompts_dir
        self.requests, self.errors = 0, 0
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def messages(self, descriptions: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages that ask for ``descriptions``' labels."""
        text = render_prompt("oni_label", self.prompts_dir, task=self.task, transitions=list(descriptions))
        return [{"role": "user", "content": text}]

    def label(self, descriptions: list[str], states: np.ndarray | None = None) -> list[Label]:
        out: list[Label] = []
        for k in range(0, len(descriptions), self.batch_size):
            out.extend(self._label_batch(descriptions[k:k + self.batch_size]))
        return out

    def _label_batch(self, descriptions: list[str]) -> list[Label]:
        with self._lock:
            self.requests += 1
        try:
            [reply] = self.coder.complete(self.messages(descriptions), n=1)
        except CoderError as exc:
            return self._fail(descriptions, f"coder error: {exc}")
        if reply.failed:
            return self._fail(descriptions, f"failed sample: {reply.error}")
        labels = parse_labels(reply.text, len(descriptions))
        if labels is None:
            excerpt = " ".join(reply.text.split())[:80]
            return self._fail(descriptions, f"no JSON list of {len(descriptions)} numbers in the reply: {excerpt!r}")
        return list(labels)

    def _fail(self, descriptions: list[str], why: str) -> list[Label]:
        with self._lock:
            self.errors += 1
            self.last_error = why
        return [None] * len(descriptions)


class OfflineLabeller:
    """Labels transitions by a rule on their states, without an LLM (tests, no-LLM runs).

    Args:
        task: the task.
        rule: ``rule(variables) -> float`` on one state's variables by name (as
            :func:`~rewardsmith.state.split_state` gives them); default: 1.0 where the task's
            sparse reward program is positive, else 0.0.
    """

    batch_size = 256

    def __init__(self, task: str | TaskSpec, rule: Callable[[dict[str, Any]], float] | None = None) -> None:
        self.task, self.rule = get_task(task), rule
        self.requests, self.errors = 0, 0
        self.last_error: str | None = None
        self._program = None
        if rule is None:
            from rewardsmith.program import sparse_program

            # compiled here, not in the worker thread; raises for a task without a sparse reward
            self._program = sparse_program(self.task)

    def label(self, descriptions: list[str], states: np.ndarray | None = None) -> list[Label]:
        if states is None:
            raise ValueError("OfflineLabeller reads the transitions' states: pass states")
        self.requests += 1
        states = np.ascontiguousarray(states, dtype=np.float64).reshape(len(descriptions), -1)
        if self._program is not None:
            return [float(r > 0) for r in self._program.batch(states)[0]]
        assert self.rule is not None
        return [float(np.clip(self.rule(split_state(self.task, s)), 0.0, 1.0)) for s in states]


__all__ = ["CoderLabeller", "Label", "Labeller", "OfflineLabeller", "describe_transition", "parse_labels"]
