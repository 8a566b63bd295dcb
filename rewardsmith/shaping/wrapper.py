"""Potential-based shaping (Ng et al. 1999) as a gymnasium wrapper, on the env's own reward.

``reward' = reward + F``, ``F = gamma * Phi(s') * (1 - terminated) - Phi(s)``: ``Phi(s') := 0``
where the episode truly ended, but not at a time-limit truncation. Over an episode of ``T`` steps
the discounted shaping telescopes: ``sum_t gamma^t F_t = gamma^T Phi(s_T) (1 - terminated) - Phi(s_0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rewardsmith.errors import RewardsmithError


class PotentialShapingWrapper(gym.Wrapper):
    """Adds ``F = gamma * Phi(s') * (1 - terminated) - Phi(s)`` to each step's reward.

    Args:
        env: a gymnasium env.
        gamma: the discount the agent is trained with (required: the shaping only preserves
            optimal policies with the agent's own gamma).
        potential: ``phi(states (n, S) float64) -> (n,)`` on flat reward states, the same contract
            as :class:`~rewardsmith.shaping.PotentialShaping` (so one potential serves both; it is
            called with one row), or a PotentialShaping (its potential is used). The state is read
            from a :class:`~rewardsmith.wrappers.TaskWrapper` below this wrapper, else from
            ``info["reward_state"]``.
        potential_fn: for envs without a TaskWrapper: ``phi(obs) -> float`` on one observation.
    Exactly one of ``potential`` and ``potential_fn``. ``Phi(s)`` of the first step comes from the
    reset; each step puts ``info["shaping"] = F`` and ``info["potential"] = Phi(s')`` (before the
    terminal zeroing).
    """

    def __init__(self, env: gym.Env, gamma: float | None, potential: Any = None,
                 potential_fn: Callable[[Any], Any] | None = None) -> None:
        super().__init__(env)
        if (potential is None) == (potential_fn is None):
            raise RewardsmithError("PotentialShapingWrapper needs exactly one of potential= (a function of the "
                                   "reward state) and potential_fn= (a function of the observation)")
        if potential is not None and not callable(potential):
            potential = getattr(potential, "phi", None)  # a PotentialShaping source
        fn = potential if potential is not None else potential_fn
        if not callable(fn):
            raise TypeError("potential must be callable (or a PotentialShaping)")
        if gamma is None:
            raise RewardsmithError("PotentialShapingWrapper: gamma is required (use the agent's discount)")
        self.set_gamma(gamma)
        self._state_phi, self._obs_phi = potential, potential_fn
        from rewardsmith.wrappers import _find_task_wrapper

        self._task_wrapper = _find_task_wrapper(env) if potential is not None else None
        self._last_phi: float | None = None

    def set_gamma(self, gamma: float) -> None:
        """Set the discount (in [0, 1])."""
        gamma = float(gamma)
        if not 0.0 <= gamma <= 1.0:
            raise RewardsmithError(f"gamma must be in [0, 1], got {gamma}")
        self.gamma = gamma

    def _phi(self, obs: Any, info: dict, after_step: bool) -> float:
        if self._obs_phi is not None:
            return float(np.asarray(self._obs_phi(obs), dtype=np.float64).reshape(()))
        tw = self._task_wrapper
        if tw is not None:
            state = tw.step_state if after_step else tw.last_state
        elif "reward_state" in info:
            state = info["reward_state"]
        else:
            raise RewardsmithError("PotentialShapingWrapper: info has no 'reward_state' (wrap the env in "
                                   "rewardsmith.TaskWrapper, or give potential_fn= on observations)")
        v = np.asarray(self._state_phi(np.asarray(state, dtype=np.float64).reshape(1, -1)), dtype=np.float64)
        if v.size != 1:
            raise RewardsmithError(f"potential returned {v.size} values for 1 state")
        return float(v.reshape(()))

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self._last_phi = self._phi(obs, info, after_step=False)
        info["potential"] = self._last_phi
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self._last_phi is None:
            raise RewardsmithError("PotentialShapingWrapper: call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        nxt = self._phi(obs, info, after_step=True)
        f = self.gamma * (0.0 if terminated else nxt) - self._last_phi
        self._last_phi = nxt
        info["shaping"], info["potential"] = f, nxt
        return obs, float(reward) + f, terminated, truncated, info


__all__ = ["PotentialShapingWrapper"]
