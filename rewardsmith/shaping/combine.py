"""Combining reward sources: weighted sums, gated terms and conjunctions.

Every combinator is itself a reward source (see :mod:`rewardsmith.sources`): it checks that its
children read the same task (same ``task.ref``), exposes that ``.task``, and passes
``set_gamma(gamma)`` on to every child that has one (so a
:class:`~rewardsmith.shaping.PotentialShaping` nested anywhere gets the algorithm's discount from
the :class:`~rewardsmith.trainer.Trainer`). Inputs go through :func:`~rewardsmith.sources.as_source`,
so reward programs work; a plain callable ``f(states (n, S)) -> (n,)`` of the current state
becomes a one-component source for the children's task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rewardsmith.errors import RewardsmithError
from rewardsmith.sources import RewardSource, Transitions, as_source, source_nonfinite


class FunctionSource:
    """A callable of the current states ``f(states (n, S)) -> (n,)`` as a reward source.

    Components: one, named ``name``, equal to the total.
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], task: Any, name: str = "value") -> None:
        if not callable(fn):
            raise TypeError(f"not callable: {type(fn).__name__}")
        self.fn, self.task, self._components = fn, task, [name]

    @property
    def components(self) -> list[str]:
        """``[name]``."""
        return self._components

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``f(t.state)`` as the total and the single component."""
        v = np.asarray(self.fn(np.ascontiguousarray(t.state, dtype=np.float64)), dtype=np.float64).reshape(-1)
        if v.shape[0] != t.n:
            raise RewardsmithError(f"reward callable returned {v.shape[0]} values for {t.n} states")
        if out is None:
            out = (np.empty(t.n), np.empty((t.n, 1)))
        out[0][:] = v
        out[1][:, 0] = v
        return out


def task_ref(task: Any) -> str:
    """``task.ref`` (``name@version``; a task name is resolved), or the name for task-like objects without one."""
    if isinstance(task, str):
        from rewardsmith.tasks import get_task

        task = get_task(task)
    return str(getattr(task, "ref", None) or getattr(task, "name", task))


def coerce_sources(items: Sequence[Any], names: Sequence[str], task: Any = None,
                   owner: str = "combination") -> tuple[list[RewardSource], Any]:
    """Sources from programs, sources or callables, all for one task; returns ``(sources, task)``.

    Raises RewardsmithError naming both tasks (and terms) when two inputs read different tasks,
    or when only callables are given and no ``task`` says which state layout they read.
    """
    sources: list[Any] = [None] * len(items)
    for i, item in enumerate(items):
        try:
            sources[i] = as_source(item)
        except TypeError:
            if not callable(item):
                raise
    first = next((i for i, s in enumerate(sources) if s is not None), None)
    ref_task, ref_name = (task, "task=") if task is not None else \
        ((sources[first].task, repr(names[first])) if first is not None else (None, ""))
    if ref_task is None:
        raise RewardsmithError(f"{owner}: only callables given; pass task= to say which state layout they read")
    for i, s in enumerate(sources):
        if s is None:
            sources[i] = FunctionSource(items[i], ref_task, "value")
        elif task_ref(s.task) != task_ref(ref_task):
            raise RewardsmithError(f"{owner}: term {names[i]!r} is for task {task_ref(s.task)!r} but {ref_name} "
                                   f"is for task {task_ref(ref_task)!r}; all terms must read the same task")
    return sources, ref_task


class Combinator:
    """Shared behaviour: children, ``set_gamma`` propagation, ``nonfinite`` and component names."""

    task: Any
    children: list[RewardSource]
    _components: list[str]

    @property
    def components(self) -> list[str]:
        """Component names, in column order."""
        return self._components

    def set_gamma(self, gamma: float) -> None:
        """Pass the discount to every child that takes one (e.g. a nested PotentialShaping)."""
        for child in self.children:
            if callable(getattr(child, "set_gamma", None)):
                child.set_gamma(gamma)

    @property
    def nonfinite(self) -> int:
        """Values the children's runtime guards replaced by 0 so far (summed)."""
        return sum(source_nonfinite(c) for c in self.children)

    def _out(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        return out if out is not None else (np.empty(t.n), np.empty((t.n, len(self._components))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({task_ref(self.task)}, components={self._components})"


def _terms(terms: Any, width: int) -> list[tuple]:
    """``{name: value}`` or ``[(name, *value)]`` as a list of tuples of ``width`` items."""
    if isinstance(terms, Mapping):
        rows = [(name, *(v if isinstance(v, tuple) else (v,))) for name, v in terms.items()]
    else:
        rows = [tuple(r) for r in terms]
    for r in rows:
        if len(r) != width:
            raise RewardsmithError(f"each term must be {width} items (name, source{', weight' if width == 3 else ''}), "
                                   f"got {r!r}")
    names = [str(r[0]) for r in rows]
    if not rows or len(set(names)) != len(names) or not all(names):
        raise RewardsmithError(f"terms need unique, non-empty names, got {names}")
    return rows


def _with_prefix(name: str, source: RewardSource) -> list[str]:
    return [name] + [f"{name}/{c}" for c in source.components]


class WeightedSum(Combinator):
    """``total = sum_i w_i * r_i`` over named terms.

    Args:
        terms: ``{name: (source, weight)}`` or a list of ``(name, source, weight)``.
        task: the task, needed only when every term is a plain callable.
    Components: for each term, ``"<name>"`` (its weighted total ``w_i * r_i``), then
    ``"<name>/<component>"`` for each of the term's own (unweighted) components.
    """

    def __init__(self, terms: Mapping[str, tuple[Any, float]] | Iterable[tuple[str, Any, float]],
                 task: Any = None) -> None:
        rows = _terms(terms, 3)
        self.names = [str(r[0]) for r in rows]
        self.weights = np.array([float(r[2]) for r in rows])
        if not np.all(np.isfinite(self.weights)):
            raise RewardsmithError(f"WeightedSum weights must be finite, got {self.weights.tolist()}")
        self.children, self.task = coerce_sources([r[1] for r in rows], self.names, task, "WeightedSum")
        self._components = [c for n, s in zip(self.names, self.children) for c in _with_prefix(n, s)]

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(sum_i w_i r_i, components)`` for the batch."""
        total, comps = self._out(t, out)
        total[:] = 0.0
        col = 0
        for w, child in zip(self.weights, self.children):
            ct, cc = child.compute(t)
            comps[:, col] = w * ct
            comps[:, col + 1:col + 1 + cc.shape[1]] = cc
            total += comps[:, col]
            col += 1 + cc.shape[1]
        return total, comps


class Gated(Combinator):
    """``total = gate + 1[gate > threshold] * dense`` (or without ``gate`` when ``include_gate=False``).

    The dense term counts only on transitions where the gate source's total exceeds ``threshold``,
    e.g. "reach the object before the shaping for lifting it counts" (gate = a reach reward or
    indicator, dense = the lift shaping). The gate is per transition (stateless, so relabelling
    stored transitions gives the same rewards); to latch it for the rest of an episode, put the
    latch in the reward state.

    Components: ``"gate"`` (the gate's total), ``"dense"`` (the gated dense total), then
    ``"dense/<component>"`` for each dense component, gated as well (0 while the gate is closed).
    """

    def __init__(self, gate: Any, dense: Any, threshold: float = 0.0, include_gate: bool = True,
                 task: Any = None) -> None:
        (self.gate, self.dense), self.task = coerce_sources([gate, dense], ["gate", "dense"], task, "Gated")
        self.children = [self.gate, self.dense]
        self.threshold, self.include_gate = float(threshold), bool(include_gate)
        self._components = ["gate"] + _with_prefix("dense", self.dense)

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(gate + open * dense, components)`` for the batch."""
        total, comps = self._out(t, out)
        gt, _ = self.gate.compute(t)
        dt, dc = self.dense.compute(t)
        open_ = (gt > self.threshold).astype(np.float64)
        comps[:, 0] = gt
        comps[:, 1] = open_ * dt
        comps[:, 2:] = open_[:, None] * dc
        total[:] = comps[:, 1] + gt if self.include_gate else comps[:, 1]
        return total, comps


class Conjunction(Combinator):
    """All terms at once: ``total = prod_i r_i`` (``mode="product"``) or ``min_i r_i`` (``mode="min"``).

    Meant for bounded terms, typically in [0, 1] (e.g. :class:`~rewardsmith.shaping.Sigmoid`
    outputs): the total is high only when every term is; a product of negative values is
    not a conjunction.

    Args:
        sources: a list of sources (named ``term0``, ``term1``, ...) or ``{name: source}``.
        mode: ``"product"`` or ``"min"``.
    Components: for each term, ``"<name>"`` (its total) and ``"<name>/<component>"``.
    """

    def __init__(self, sources: Sequence[Any] | Mapping[str, Any], mode: str = "product", task: Any = None) -> None:
        if mode not in ("product", "min"):
            raise RewardsmithError(f"Conjunction mode must be 'product' or 'min', got {mode!r}")
        self.mode = mode
        items = dict(sources) if isinstance(sources, Mapping) else {f"term{i}": s for i, s in enumerate(sources)}
        rows = _terms(items, 2)
        self.names = [str(r[0]) for r in rows]
        self.children, self.task = coerce_sources([r[1] for r in rows], self.names, task, "Conjunction")
        self._components = [c for n, s in zip(self.names, self.children) for c in _with_prefix(n, s)]

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(prod or min of the terms, components)`` for the batch."""
        total, comps = self._out(t, out)
        totals, col = [], 0
        for child in self.children:
            ct, cc = child.compute(t)
            comps[:, col] = ct
            comps[:, col + 1:col + 1 + cc.shape[1]] = cc
            totals.append(comps[:, col])
            col += 1 + cc.shape[1]
        stack = np.stack(totals)
        total[:] = stack.prod(axis=0) if self.mode == "product" else stack.min(axis=0)
        return total, comps


__all__ = ["Combinator", "Conjunction", "FunctionSource", "Gated", "WeightedSum", "coerce_sources", "task_ref"]
