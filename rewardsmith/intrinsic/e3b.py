"""Exploration via Elliptical Episodic Bonuses, E3B (Henaff et al., 2022, "Exploration via
Elliptical Episodic Bonuses").

With ``phi`` an inverse-dynamics embedding (:class:`~rewardsmith.intrinsic.episodic.InverseDynamicsEmbedding`)
and, per env, ``C_{t-1} = lambda * I + sum_{i<t} phi_i phi_i^T`` over this episode's states, the
bonus of the next observation is the elliptical norm::

    b_t = phi_t^T C_{t-1}^{-1} phi_t

``C^{-1}`` is kept directly by Sherman-Morrison rank-1 updates (``u = C^{-1} phi``)::

    C_t^{-1} = C_{t-1}^{-1} - u u^T / (1 + phi^T u)

and reset to ``I / lambda`` at an episode's end.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rewardsmith.intrinsic.base import Bonus, TransitionBatch, register_bonus
from rewardsmith.intrinsic.episodic import InverseDynamicsEmbedding


class E3B(Bonus):
    """E3B bonus ``phi(o')^T C^{-1} phi(o')`` with ``C`` this episode's (ridge) embedding covariance."""

    name, episodic = "e3b", True

    def __init__(self, ridge: float = 0.1, latent: int = 32, hidden: int = 128, lr: float = 1e-3,
                 batch_size: int = 256, seed: int | None = 0) -> None:
        self.ridge, self.latent, self.hidden, self.lr, self.batch_size, self.seed = ridge, latent, hidden, lr, batch_size, seed

    def setup(self, observation_space: Any, action_space: Any, n_envs: int, device: Any = "cpu") -> None:
        super().setup(observation_space, action_space, n_envs, device)
        self.idm = InverseDynamicsEmbedding(observation_space, action_space, self.latent, self.hidden, self.lr,
                                            self.batch_size, device, self.seed)
        self.cov_inverse = np.tile(np.eye(self.latent) / self.ridge, (n_envs, 1, 1))  # (n, d, d)

    def elliptical(self, phi: np.ndarray) -> np.ndarray:
        """Bonuses ``(n,)`` of embeddings ``phi`` ``(n, d)`` (one per env); then adds them to ``C``."""
        u = np.einsum("nij,nj->ni", self.cov_inverse, phi)
        b = np.einsum("ni,ni->n", phi, u)
        self.cov_inverse -= np.einsum("ni,nj->nij", u, u) / (1.0 + b)[:, None, None]
        return b

    def compute(self, batch: TransitionBatch) -> np.ndarray:
        T, n = batch.shape
        phi = self.idm.embed(batch.next_obs.reshape(T * n, -1)).reshape(T, n, -1)
        return np.stack([self.elliptical(phi[t]) for t in range(T)])

    def reset(self, env_mask: np.ndarray) -> None:
        self.cov_inverse[np.asarray(env_mask, dtype=bool)] = np.eye(self.latent) / self.ridge

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        return {"idm_loss": self.idm.update(batch)}

    def state_dict(self) -> dict[str, Any]:
        return {"idm": self.idm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.idm.load_state_dict(state["idm"])


register_bonus("e3b", E3B)
