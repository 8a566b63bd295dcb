"""Random Network Distillation (Burda et al., 2018): the bonus is the error of a trained
predictor at matching a fixed random target network on the (normalised) next observation."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from torch import nn

from rewardsmith.intrinsic.base import Bonus, RunningStd, TransitionBatch, flat_obs_dim, register_bonus


def mlp(inp: int, out: int, hidden: int = 128) -> nn.Module:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out))


class ObsNorm:
    """Per-feature running mean/std of observations; normalised values are clipped to +-5."""

    def __init__(self, dim: int) -> None:
        self.stats = [RunningStd() for _ in range(dim)]

    def update(self, x: np.ndarray) -> None:
        for j, s in enumerate(self.stats):
            s.update(x[:, j])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mean = np.array([s.mean for s in self.stats])
        std = np.array([s.std for s in self.stats])
        return np.clip((x - mean) / std, -5, 5).astype(np.float32)


class RND(Bonus):
    """RND bonus: ``||predictor(o') - target(o')||^2`` on the normalised next observation."""

    name = "rnd"

    def __init__(self, latent: int = 128, hidden: int = 128, lr: float = 1e-3, batch_size: int = 256,
                 epochs: int = 1, seed: int | None = 0) -> None:
        self.latent, self.hidden, self.lr, self.batch_size, self.epochs, self.seed = latent, hidden, lr, batch_size, epochs, seed

    def setup(self, observation_space: Any, action_space: Any, n_envs: int, device: Any = "cpu") -> None:
        super().setup(observation_space, action_space, n_envs, device)
        dim = flat_obs_dim(observation_space)
        if self.seed is not None:
            th.manual_seed(self.seed)
        self.target = mlp(dim, self.latent, self.hidden).to(device)
        self.predictor = mlp(dim, self.latent, self.hidden).to(device)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.opt = th.optim.Adam(self.predictor.parameters(), lr=self.lr)
        self.obs_norm = ObsNorm(dim)
        self._rng = np.random.default_rng(self.seed)

    def _inputs(self, batch: TransitionBatch) -> np.ndarray:
        x = batch.next_obs.reshape(batch.next_obs.shape[0] * batch.next_obs.shape[1], -1).astype(np.float64)
        return x

    def _errors(self, x: np.ndarray) -> th.Tensor:
        t = th.as_tensor(self.obs_norm(x), device=self.device)
        return ((self.predictor(t) - self.target(t)) ** 2).mean(dim=1)

    def compute(self, batch: TransitionBatch) -> np.ndarray:
        x = self._inputs(batch)
        if self.obs_norm.stats[0].count == 0:
            self.obs_norm.update(x)
        with th.no_grad():
            err = self._errors(x).cpu().numpy()
        return err.reshape(batch.shape)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        x = self._inputs(batch)
        self.obs_norm.update(x)
        losses = []
        for _ in range(self.epochs):
            idx = self._rng.permutation(len(x))
            for k in range(0, len(x), self.batch_size):
                loss = self._errors(x[idx[k:k + self.batch_size]]).mean()
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                losses.append(loss.item())
        return {"rnd_loss": float(np.mean(losses))} if losses else {}

    def state_dict(self) -> dict[str, Any]:
        return {"predictor": self.predictor.state_dict(), "target": self.target.state_dict(),
                "opt": self.opt.state_dict(), "obs_norm": [s.state_dict() for s in self.obs_norm.stats]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.predictor.load_state_dict(state["predictor"])
        self.target.load_state_dict(state["target"])
        self.opt.load_state_dict(state["opt"])
        for s, d in zip(self.obs_norm.stats, state["obs_norm"]):
            s.load_state_dict(d)


register_bonus("rnd", RND)
