"""Core types of intrinsic (exploration) bonuses.

A :class:`Bonus` turns a :class:`TransitionBatch` of transitions into one bonus per transition,
and trains its own models on the same batches. :class:`~rewardsmith.intrinsic.callback.IntrinsicCallback`
feeds it from an SB3 algorithm. :func:`make_bonus` builds a bonus by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass
class TransitionBatch:
    """Transitions laid out ``(T, n_envs, ...)``, time first.

    Attributes:
        obs: the observations as the policy saw them (after any VecNormalize), float32.
        actions: the actions sent to the envs, ``(T, n, *action_shape)`` (discrete: ``(T, n)``).
        next_obs: the observations after each step; where an episode ended, the TERMINAL
            observation (``info["terminal_observation"]``), not the reset one.
        terminated: ``(T, n)`` bool, the episode ended in a terminal state.
        truncated: ``(T, n)`` bool, the episode was cut by a time limit.
        states: ``(T, n, S)`` float64 reward states after each step (the terminal state at an
            episode's end), or None when the env does not provide them.
    """

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    states: np.ndarray | None = None

    @property
    def dones(self) -> np.ndarray:
        """``(T, n)`` bool: the episode ended (terminated or truncated) at this step."""
        return np.logical_or(self.terminated, self.truncated)

    @property
    def shape(self) -> tuple[int, int]:
        return self.terminated.shape  # type: ignore[return-value]

    def step(self, t: int) -> "TransitionBatch":
        """The transitions of step ``t`` as a ``(1, n, ...)`` batch."""
        sl = slice(t, t + 1)
        return TransitionBatch(self.obs[sl], self.actions[sl], self.next_obs[sl], self.terminated[sl],
                               self.truncated[sl], None if self.states is None else self.states[sl])

    def flat(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(T, n, *rest)`` reshaped to ``(T * n, *rest)``."""
        return x.reshape((-1,) + x.shape[2:])

    @staticmethod
    def concat(batches: list["TransitionBatch"]) -> "TransitionBatch":
        """Batches joined along time."""
        states = None if any(b.states is None for b in batches) else np.concatenate([b.states for b in batches])
        return TransitionBatch(*(np.concatenate([getattr(b, k) for b in batches])
                                 for k in ("obs", "actions", "next_obs", "terminated", "truncated")), states)


class Bonus:
    """An intrinsic reward.

    Subclasses set :attr:`name`, implement :meth:`compute` and usually :meth:`update`.

    An *episodic* bonus (``episodic = True``) has a memory per env: the callback computes it step
    by step in order (batches of one step) and calls :meth:`reset` for env ``i`` right after the
    step where env ``i``'s episode ended (terminated or truncated), so the first step of the next
    episode starts with an empty memory.
    """

    name: str = "bonus"
    episodic: bool = False

    def setup(self, observation_space: Any, action_space: Any, n_envs: int, device: Any = "cpu") -> None:
        """Build the models for these spaces; called once before the first batch."""
        self.observation_space, self.action_space = observation_space, action_space
        self.n_envs, self.device = n_envs, device

    def compute(self, batch: TransitionBatch) -> np.ndarray:
        """One bonus per transition, ``(T, n)`` float."""
        raise NotImplementedError

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Train the bonus's models on ``batch``; returns losses for logging (default: nothing)."""
        return {}

    def reset(self, env_mask: np.ndarray) -> None:
        """Forget the episodic memory of the envs where ``env_mask`` (``(n,)`` bool) is True."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class RunningStd:
    """Running mean and variance of a stream of values (Chan et al.'s parallel update).

    ``normalize(x)`` divides by the running std (not centring: a bonus keeps its sign).
    """

    def __init__(self, epsilon: float = 1e-8) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0.0
        self.epsilon = epsilon

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.size == 0:
            return
        b_mean, b_var, b_n = float(x.mean()), float(x.var()), x.size
        if self.count == 0:
            self.mean, self.var, self.count = b_mean, b_var, float(b_n)
            return
        delta, total = b_mean - self.mean, self.count + b_n
        m2 = self.var * self.count + b_var * b_n + delta ** 2 * self.count * b_n / total
        self.mean, self.var, self.count = self.mean + delta * b_n / total, m2 / total, total

    @property
    def std(self) -> float:
        return float(np.sqrt(self.var + self.epsilon))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) / self.std

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


_REGISTRY: dict[str, Callable[..., Bonus]] = {}


def register_bonus(name: str, factory: Callable[..., Bonus]) -> None:
    """Make ``factory`` available to :func:`make_bonus` as ``name``."""
    _REGISTRY[name.lower()] = factory


def bonus_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    from rewardsmith.intrinsic import counts, e3b, episodic, icm, ngu, oni, rnd  # noqa: F401  (they register themselves)


def make_bonus(name: str, task: Any = None, **kwargs: Any) -> Bonus:
    """The bonus registered as ``name`` ("rnd", "icm", "simhash", "oni", "episodic", "e3b", "ngu"),
    built with ``kwargs``; ``task`` is passed on to the bonuses that take one (ONI reads the
    task's variables) and ignored by the others."""
    import inspect

    _load_builtins()
    try:
        factory = _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"unknown intrinsic bonus {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    if task is not None and "task" in inspect.signature(factory).parameters:
        kwargs["task"] = task
    return factory(**kwargs)


def flat_obs_dim(space: Any) -> int:
    """Size of a Box observation, flattened (other spaces are not supported)."""
    shape = getattr(space, "shape", None)
    if shape is None or len(shape) == 0 and not hasattr(space, "n"):
        raise TypeError(f"intrinsic bonuses need a Box observation space, got {space}")
    return int(np.prod(shape)) if len(shape) else 1


class ActionCoding:
    """How the bonuses' models read actions (ICM, the inverse-dynamics embedding).

    Discrete actions are class indices (:meth:`targets`) or one-hot vectors (:meth:`inputs`); Box
    actions are scaled to [-1, 1] in the dimensions with finite bounds (unbounded ones as they are).
    """

    def __init__(self, action_space: Any, who: str, device: Any = "cpu") -> None:
        from gymnasium import spaces

        self.device = device
        self.discrete = isinstance(action_space, spaces.Discrete)
        if self.discrete:
            self.dim = int(action_space.n)
        elif isinstance(action_space, spaces.Box):
            self.dim = int(np.prod(action_space.shape))
            lo, hi = action_space.low.ravel(), action_space.high.ravel()
            self._ok = np.isfinite(lo) & np.isfinite(hi)
            self._lo, self._hi = np.where(self._ok, lo, -1.0), np.where(self._ok, hi, 1.0)
        else:
            raise TypeError(f"{who} needs a Discrete or Box action space, got {action_space}")

    def targets(self, actions: np.ndarray) -> Any:
        """``(m,)`` int64 class indices (Discrete) or ``(m, dim)`` scaled floats (Box), as a tensor."""
        import torch as th

        a = np.asarray(actions).reshape(len(actions), -1)
        if self.discrete:
            return th.as_tensor(a[:, 0].astype(np.int64), device=self.device)
        scaled = np.where(self._ok, 2 * (a - self._lo) / (self._hi - self._lo) - 1, a)
        return th.as_tensor(scaled, dtype=th.float32, device=self.device)

    def inputs(self, actions: np.ndarray) -> Any:
        """``(m, dim)`` float tensor: one-hot (Discrete) or scaled (Box)."""
        import torch.nn.functional as F

        t = self.targets(actions)
        return F.one_hot(t, self.dim).float() if self.discrete else t

