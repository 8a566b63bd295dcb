"""Episodic novelty of Never Give Up (Badia et al., 2020, "Never Give Up: Learning Directed
Exploration Strategies", Alg. 1 and App. A).

Each env keeps a memory ``M`` of the embeddings ``f(x)`` of this episode's states. The bonus of a
new state ``x`` is a pseudo-count over its ``k`` nearest neighbours ``n_1..n_k`` in ``M``::

    d_i^2 <- max(d(f(x), n_i)^2 / d_m^2 - xi, 0)        (d_m^2: running mean of kNN d^2)
    K_i    = eps / (d_i^2 + eps)                        (inverse kernel)
    r      = 1 / (sqrt(sum_i K_i) + c), or 0 when sqrt(sum_i K_i) + c > max_similarity

The embedding ``f`` is trained by an inverse-dynamics loss (predict ``a`` from ``f(o), f(o')``:
cross-entropy for Discrete actions, MSE for Box ones), so it keeps what the agent controls;
:class:`InverseDynamicsEmbedding` is shared with E3B and NGU. ``embedding="obs"`` uses the raw
observation instead. The memory holds all the episode's states before the scored one: at an
episode's first step it is seeded with the start observation ``obs``, then each scored
``next_obs`` is appended.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from torch.nn import functional as F

from rewardsmith.intrinsic.base import (
    ActionCoding,
    Bonus,
    RunningStd,
    TransitionBatch,
    flat_obs_dim,
    register_bonus,
)
from rewardsmith.intrinsic.rnd import mlp


class InverseDynamicsEmbedding:
    """``f(o)``, an MLP embedding trained so that ``g(f(o), f(o'))`` predicts the action."""

    def __init__(self, observation_space: Any, action_space: Any, latent: int = 32, hidden: int = 128,
                 lr: float = 1e-3, batch_size: int = 256, device: Any = "cpu", seed: int | None = 0) -> None:
        if seed is not None:
            th.manual_seed(seed)
        self.device, self.batch_size, self.latent = device, batch_size, latent
        self.actions = ActionCoding(action_space, "an inverse-dynamics embedding", device)
        self.discrete, self.act_dim = self.actions.discrete, self.actions.dim
        self.encoder = mlp(flat_obs_dim(observation_space), latent, hidden).to(device)
        self.inverse = mlp(2 * latent, self.act_dim, hidden).to(device)
        self.opt = th.optim.Adam([*self.encoder.parameters(), *self.inverse.parameters()], lr=lr)
        self._rng = np.random.default_rng(seed)

    def _obs(self, x: np.ndarray) -> th.Tensor:
        return th.as_tensor(np.asarray(x, dtype=np.float32).reshape(len(x), -1), device=self.device)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embeddings ``(m, latent)`` float64 of observations ``(m, ...)``."""
        with th.no_grad():
            return self.encoder(self._obs(x)).cpu().numpy().astype(np.float64)

    def update(self, batch: TransitionBatch) -> float:
        """One epoch of minibatches of the inverse-dynamics loss on ``batch``; the mean loss."""
        m = batch.shape[0] * batch.shape[1]
        o, o2 = self._obs(batch.obs.reshape(m, -1)), self._obs(batch.next_obs.reshape(m, -1))
        target = self.actions.targets(np.asarray(batch.actions).reshape(m, -1))
        idx = th.as_tensor(self._rng.permutation(m), device=self.device)
        losses = []
        for k in range(0, m, self.batch_size):
            j = idx[k:k + self.batch_size]
            pred = self.inverse(th.cat([self.encoder(o[j]), self.encoder(o2[j])], 1))
            loss = F.cross_entropy(pred, target[j]) if self.discrete else F.mse_loss(pred, target[j])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
        return float(np.mean(losses)) if losses else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).state_dict() for k in ("encoder", "inverse", "opt")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            getattr(self, k).load_state_dict(v)


class EpisodicNovelty(Bonus):
    """NGU's episodic bonus ``1 / (sqrt(sum_k K(f(x'), n_k)) + c)`` over this episode's memory."""

    name, episodic = "episodic", True

    def __init__(self, embedding: str = "idm", k: int = 10, capacity: int = 5000, c: float = 0.001,
                 eps: float = 0.001, xi: float = 0.008, max_similarity: float = 8.0, latent: int = 32,
                 hidden: int = 128, lr: float = 1e-3, batch_size: int = 256, seed: int | None = 0) -> None:
        if embedding not in ("idm", "obs"):
            raise ValueError(f"embedding must be 'idm' or 'obs', got {embedding!r}")
        self.embedding, self.k, self.capacity, self.c, self.eps, self.xi = embedding, k, capacity, c, eps, xi
        self.max_similarity, self.latent, self.hidden, self.lr = max_similarity, latent, hidden, lr
        self.batch_size, self.seed = batch_size, seed

    def setup(self, observation_space: Any, action_space: Any, n_envs: int, device: Any = "cpu") -> None:
        super().setup(observation_space, action_space, n_envs, device)
        self.idm: InverseDynamicsEmbedding | None = None
        if self.embedding == "idm":
            self.idm = InverseDynamicsEmbedding(observation_space, action_space, self.latent, self.hidden, self.lr,
                                                self.batch_size, device, self.seed)
        dim = self.latent if self.idm is not None else flat_obs_dim(observation_space)
        self.memory = np.zeros((n_envs, self.capacity, dim))  # a ring per env: the oldest is overwritten
        self.sizes = np.zeros(n_envs, dtype=np.int64)
        self._next = np.zeros(n_envs, dtype=np.int64)
        self.dist_mean = RunningStd()  # its .mean is d_m^2

    def embed(self, x: np.ndarray) -> np.ndarray:
        """``f(x)`` ``(m, dim)`` of observations ``(m, ...)``."""
        if self.idm is None:
            return np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return self.idm.embed(x)

    def _add(self, i: int, e: np.ndarray) -> None:
        self.memory[i, self._next[i]] = e
        self._next[i] = (self._next[i] + 1) % self.capacity
        self.sizes[i] = min(self.sizes[i] + 1, self.capacity)

    def score(self, i: int, e: np.ndarray) -> float:
        """The bonus of embedding ``e`` against env ``i``'s memory (updates ``d_m^2``, not the memory)."""
        d2 = ((self.memory[i, :self.sizes[i]] - e) ** 2).sum(1)
        k = min(self.k, len(d2))
        knn = np.partition(d2, k - 1)[:k] if k < len(d2) else d2
        self.dist_mean.update(knn)
        dm2 = self.dist_mean.mean
        norm = np.maximum((knn / dm2 if dm2 > 0 else np.zeros_like(knn)) - self.xi, 0.0)
        s = float(np.sqrt((self.eps / (norm + self.eps)).sum())) + self.c
        return 0.0 if s > self.max_similarity else 1.0 / s

    def compute(self, batch: TransitionBatch) -> np.ndarray:
        T, n = batch.shape
        out = np.zeros((T, n))
        for t in range(T):
            if (self.sizes == 0).any():
                start = self.embed(batch.obs[t])
                for i in np.flatnonzero(self.sizes == 0):
                    self._add(i, start[i])
            emb = self.embed(batch.next_obs[t])
            for i in range(n):
                out[t, i] = self.score(i, emb[i])
                self._add(i, emb[i])
        return out

    def reset(self, env_mask: np.ndarray) -> None:
        mask = np.asarray(env_mask, dtype=bool)
        self.sizes[mask], self._next[mask] = 0, 0

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        return {} if self.idm is None else {"idm_loss": self.idm.update(batch)}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"dist_mean": self.dist_mean.state_dict()}
        if self.idm is not None:
            state["idm"] = self.idm.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dist_mean.load_state_dict(state["dist_mean"])
        if self.idm is not None and "idm" in state:
            self.idm.load_state_dict(state["idm"])


register_bonus("episodic", EpisodicNovelty)
