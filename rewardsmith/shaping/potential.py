"""Potential-based reward shaping (Ng, Harada & Russell, ICML 1999).

``F(s, s') = gamma * Phi(s') - Phi(s)``, with ``Phi(s') := 0`` where the episode truly ended
(``terminated``), but not at a time-limit truncation. Adding ``F`` to any reward leaves the set
of optimal policies unchanged (Ng et al. 1999, Theorem 1).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from rewardsmith.errors import RewardsmithError
from rewardsmith.sources import Transitions


class PotentialShaping:
    """A reward source: ``total = base_total + gamma * Phi(s') * (1 - terminated) - Phi(s)``.

    Args:
        potential: a callable ``phi(states (n, S) float64) -> (n,)``.
        task: the task whose state layout ``phi`` reads (taken from ``base`` when omitted).
        gamma: the discount; None means "set later" through :meth:`set_gamma`.
        base: an optional reward source whose total and components are kept.
    Components: the base's components, then ``"shaping"`` (F) and ``"potential"`` (Phi(s')).
    """

    def __init__(self, potential: Callable[[np.ndarray], Any], gamma: float | None = None,
                 base: Any = None, task: Any = None) -> None:
        if base is not None:
            from rewardsmith.sources import as_source
            base = as_source(base)
        self.base = base
        task = task if task is not None else getattr(base, "task", None)
        if task is None:
            raise RewardsmithError("PotentialShaping needs task= (or a base source) to know the state layout")
        from rewardsmith.tasks import get_task

        self.task = get_task(task) if isinstance(task, str) else task  # a name, a spec or a task-like object
        if not callable(potential):
            raise TypeError(f"potential must be callable, got {type(potential).__name__}")
        self.phi = potential
        self.gamma = None if gamma is None else float(gamma)
        base_comps = list(base.components) if base is not None else []
        self._components = [c if c not in ("shaping", "potential") else f"base/{c}" for c in base_comps]
        self._components += ["shaping", "potential"]

    @property
    def components(self) -> list[str]:
        """Base components, then ``shaping`` and ``potential``."""
        return self._components

    def set_gamma(self, gamma: float) -> None:
        """Set the discount (the Trainer passes its algorithm's gamma)."""
        self.gamma = float(gamma)

    def _phi(self, states: np.ndarray) -> np.ndarray:
        v = np.asarray(self.phi(np.ascontiguousarray(states, dtype=np.float64)), dtype=np.float64).reshape(-1)
        if v.shape[0] != states.shape[0]:
            raise RewardsmithError(f"potential returned {v.shape[0]} values for {states.shape[0]} states")
        return v

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(total, components)`` for the batch."""
        if self.gamma is None:
            raise RewardsmithError("PotentialShaping: gamma is not set; pass gamma= or call set_gamma(gamma)")
        n = t.n
        if out is None:
            out = (np.empty(n), np.empty((n, len(self._components))))
        nxt = self._phi(t.state)
        nxt_eff = np.where(t.terminated, 0.0, nxt)
        f = self.gamma * nxt_eff - self._phi(t.prev_state)
        total, comps = out
        if self.base is not None:
            bt, bc = self.base.compute(t)
            total[:] = bt + f
            comps[:, :bc.shape[1]] = bc
        else:
            total[:] = f
        comps[:, -2] = f
        comps[:, -1] = nxt_eff
        return out
