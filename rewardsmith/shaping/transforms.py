"""Reward transforms: a source that maps another source's total ``r`` elementwise.

Each ``Transform(base)`` keeps the base's components and adds its own output column (named by
:attr:`Transform.name`, e.g. ``"sigmoid"``); its total is the transformed base total. A base
component with the same name as the output is renamed ``"base/<name>"``. ``set_gamma`` is passed
to the base (a transformed :class:`~rewardsmith.shaping.PotentialShaping` still gets the gamma).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardsmith.errors import RewardsmithError
from rewardsmith.shaping.combine import Combinator, coerce_sources
from rewardsmith.sources import Transitions


class Transform(Combinator):
    """Base class: ``total = f(base_total)``; components: the base's, then ``name`` (= total).

    ``set_gamma`` and ``nonfinite`` reach the children as in every :class:`Combinator`."""

    name = "transformed"

    def __init__(self, base: Any, task: Any = None) -> None:
        (self.base,), self.task = coerce_sources([base], ["base"], task, type(self).__name__)
        self._components = [f"base/{c}" if c == self.name else c for c in self.base.components] + [self.name]

    @property
    def children(self) -> list[Any]:  # type: ignore[override]
        """The sources this transform reads (the base, and a reference source where there is one)."""
        return [self.base]

    def apply(self, r: np.ndarray, t: Transitions) -> np.ndarray:
        """The transformed totals (``r`` is the base total for batch ``t``)."""
        raise NotImplementedError

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(f(base_total), [base components, f(base_total)])`` for the batch."""
        if out is None:
            out = (np.empty(t.n), np.empty((t.n, len(self._components))))
        bt, bc = self.base.compute(t)
        total, comps = out
        total[:] = self.apply(np.asarray(bt, dtype=np.float64), t)
        comps[:, :-1] = bc
        comps[:, -1] = total
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base!r})"


class Normalize(Transform):
    """``clip((r - mean) / sqrt(var + epsilon), -clip, clip)`` with a running mean and variance of r.

    The running statistics of the base totals are updated with each batch *before* normalizing it
    (as SB3's ``VecNormalize`` does; Engstrom et al. 2020, "Implementation Matters in Deep RL"),
    by Chan et al.'s parallel update (:class:`~rewardsmith.intrinsic.base.RunningStd`). Unlike
    ``VecNormalize``, which scales by the std of the discounted *return* and does not centre, this
    centres and scales the reward itself. With ``update=False`` the statistics stay fixed (set
    :attr:`update` to False before relabelling stored transitions, or they move with them).
    """

    name = "normalized"

    def __init__(self, base: Any, clip: float = 10.0, epsilon: float = 1e-8, update: bool = True,
                 task: Any = None) -> None:
        super().__init__(base, task)
        from rewardsmith.intrinsic.base import RunningStd

        if not clip > 0:
            raise RewardsmithError(f"Normalize: clip must be > 0, got {clip}")
        self.clip, self.update = float(clip), bool(update)
        self.stats = RunningStd(epsilon=epsilon)

    def apply(self, r: np.ndarray, t: Transitions) -> np.ndarray:
        if self.update:
            self.stats.update(r)
        return np.clip((r - self.stats.mean) / self.stats.std, -self.clip, self.clip)

    def state_dict(self) -> dict[str, float]:
        """The running statistics (``mean``, ``var``, ``count``)."""
        return self.stats.state_dict()

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore statistics saved by :meth:`state_dict`."""
        self.stats.load_state_dict({k: float(state[k]) for k in ("mean", "var", "count")})


class _Referenced(Transform):
    """A transform with a reference: a constant or a source's per-transition total (same task)."""

    def __init__(self, base: Any, reference: Any = 0.0, task: Any = None) -> None:
        super().__init__(base, task)
        self.reference: Any
        if isinstance(reference, (int, float, np.number)):
            self.reference = float(reference)
        else:
            (self.reference,), _ = coerce_sources([reference], ["reference"], self.task, type(self).__name__)

    @property
    def children(self) -> list[Any]:
        return [self.base] + ([] if isinstance(self.reference, float) else [self.reference])

    def _ref(self, t: Transitions) -> np.ndarray | float:
        return self.reference if isinstance(self.reference, float) else self.reference.compute(t)[0]


class Centered(_Referenced):
    """``r - reference`` (reference: a constant or a reward source's total on the same transition)."""

    name = "centered"

    def apply(self, r: np.ndarray, t: Transitions) -> np.ndarray:
        return r - self._ref(t)


class Sigmoid(_Referenced):
    """``sigmoid((r - reference) / scale) = 1 / (1 + exp(-(r - reference) / scale))``, in (0, 1).

    The bounded "preference as reward" transform (Fu et al. 2025, "Reward Shaping to Mitigate
    Reward Hacking in RLHF", PAR: the sigmoid of the reward minus a reference reward): it
    saturates, so pushing the reward far past the reference gains little. ``reference`` is a
    constant or a reward source's total on the same transition; ``scale > 0``.
    """

    name = "sigmoid"

    def __init__(self, base: Any, reference: Any = 0.0, scale: float = 1.0, task: Any = None) -> None:
        super().__init__(base, reference, task)
        if not scale > 0:
            raise RewardsmithError(f"Sigmoid: scale must be > 0, got {scale}")
        self.scale = float(scale)

    def apply(self, r: np.ndarray, t: Transitions) -> np.ndarray:
        x = (r - self._ref(t)) / self.scale
        e = np.exp(-np.abs(x))  # never overflows; exact in both tails
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Log(Transform):
    """``log(max(r + offset, epsilon))``.

    For rewards known to be positive once shifted by ``offset``. Where ``r + offset <= epsilon``
    (and for NaN), ``on_nonpositive="clip"`` (the default) clamps to ``log(epsilon)`` and counts
    the values in :attr:`clipped`; ``on_nonpositive="raise"`` raises RewardsmithError instead.
    For rewards of either sign use :class:`Symlog`.
    """

    name = "log"

    def __init__(self, base: Any, offset: float = 0.0, epsilon: float = 1e-6, on_nonpositive: str = "clip",
                 task: Any = None) -> None:
        super().__init__(base, task)
        if on_nonpositive not in ("clip", "raise"):
            raise RewardsmithError(f"Log: on_nonpositive must be 'clip' or 'raise', got {on_nonpositive!r}")
        if not epsilon > 0:
            raise RewardsmithError(f"Log: epsilon must be > 0, got {epsilon}")
        self.offset, self.epsilon, self.on_nonpositive = float(offset), float(epsilon), on_nonpositive
        self.clipped = 0

    def apply(self, r: np.ndarray, t: Transitions) -> np.ndarray:
        x = r + self.offset
        bad = ~(x > self.epsilon)
        if bad.any():
            if self.on_nonpositive == "raise":
                raise RewardsmithError(f"Log: {int(bad.sum())} rewards have r + offset <= epsilon "
                                       f"(min {np.nanmin(x) if np.isfinite(x).any() else x[0]}); "
                                       "raise offset, or use on_nonpositive='clip' or Symlog")
            self.clipped += int(bad.sum())
            x = np.where(bad, self.epsilon, x)
        return np.log(x)


class Symlog(Transform):
    """``symlog(r) = sign(r) * log(1 + |r|)`` (Hafner et al. 2023, DreamerV3): sign-safe, ~r near 0."""

    name = "symlog"

    def apply(self, r: np.ndarray, t: Transitions) -> np.ndarray:
        return np.sign(r) * np.log1p(np.abs(r))


__all__ = ["Centered", "Log", "Normalize", "Sigmoid", "Symlog", "Transform"]
