"""Never Give Up's intrinsic reward (Badia et al., 2020, "Never Give Up: Learning Directed
Exploration Strategies", Sec. 2): the episodic novelty modulated by a lifelong novelty::

    r_t   = r_t^episodic * min(max(alpha_t, 1), L)
    alpha = 1 + (err(x_t) - mu_err) / sigma_err

``r^episodic`` is :class:`~rewardsmith.intrinsic.episodic.EpisodicNovelty` (kNN over this
episode's inverse-dynamics embeddings), ``err`` the error of an
:class:`~rewardsmith.intrinsic.rnd.RND` predictor on the next observation, ``mu_err`` and
``sigma_err`` its running mean and std, ``L = 5``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rewardsmith.intrinsic.base import Bonus, RunningStd, TransitionBatch, register_bonus
from rewardsmith.intrinsic.episodic import EpisodicNovelty
from rewardsmith.intrinsic.rnd import RND


class NGU(Bonus):
    """``episodic * clip(1 + (err - mean) / std, 1, L)``; ``episodic_kwargs`` and ``rnd_kwargs``
    go to the two parts."""

    name, episodic = "ngu", True

    def __init__(self, max_scale: float = 5.0, embedding: str = "idm", episodic_kwargs: dict[str, Any] | None = None,
                 rnd_kwargs: dict[str, Any] | None = None, seed: int | None = 0) -> None:
        self.max_scale = max_scale
        self.novelty = EpisodicNovelty(embedding=embedding, seed=seed, **(episodic_kwargs or {}))
        self.rnd = RND(seed=seed, **(rnd_kwargs or {}))
        self.err_stats = RunningStd()

    def setup(self, observation_space: Any, action_space: Any, n_envs: int, device: Any = "cpu") -> None:
        super().setup(observation_space, action_space, n_envs, device)
        self.novelty.setup(observation_space, action_space, n_envs, device)
        self.rnd.setup(observation_space, action_space, n_envs, device)

    def modulation(self, err: np.ndarray) -> np.ndarray:
        """``clip(alpha, 1, L)`` of RND errors ``err``, after adding them to the running stats."""
        self.err_stats.update(err)
        alpha = 1.0 + (err - self.err_stats.mean) / self.err_stats.std
        return np.clip(alpha, 1.0, self.max_scale)

    def compute(self, batch: TransitionBatch) -> np.ndarray:
        episodic = self.novelty.compute(batch)
        err = np.asarray(self.rnd.compute(batch), dtype=np.float64)
        return episodic * self.modulation(err)

    def reset(self, env_mask: np.ndarray) -> None:
        self.novelty.reset(env_mask)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        return {**self.novelty.update(batch), **self.rnd.update(batch)}

    def state_dict(self) -> dict[str, Any]:
        return {"episodic": self.novelty.state_dict(), "rnd": self.rnd.state_dict(),
                "err_stats": self.err_stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.novelty.load_state_dict(state["episodic"])
        self.rnd.load_state_dict(state["rnd"])
        self.err_stats.load_state_dict(state["err_stats"])


register_bonus("ngu", NGU)
