"""Intrinsic Curiosity Module (Pathak et al., 2017): an encoder phi trained by an inverse
model (predict the action from phi(o), phi(o')); the bonus is the forward model's error at
predicting phi(o') from phi(o) and the action. Discrete and Box actions."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from torch.nn import functional as F

from rewardsmith.intrinsic.base import (
    ActionCoding,
    Bonus,
    TransitionBatch,
    flat_obs_dim,
    register_bonus,
)
from rewardsmith.intrinsic.rnd import mlp


class ICM(Bonus):
    """ICM bonus ``eta/2 * ||f(phi(o), a) - phi(o')||^2``; loss ``(1-beta) inv + beta fwd``."""

    name = "icm"

    def __init__(self, latent: int = 64, hidden: int = 128, lr: float = 1e-3, batch_size: int = 256,
                 beta: float = 0.2, eta: float = 1.0, seed: int | None = 0) -> None:
        self.latent, self.hidden, self.lr, self.batch_size = latent, hidden, lr, batch_size
        self.beta, self.eta, self.seed = beta, eta, seed

    def setup(self, observation_space: Any, action_space: Any, n_envs: int, device: Any = "cpu") -> None:
        super().setup(observation_space, action_space, n_envs, device)
        if self.seed is not None:
            th.manual_seed(self.seed)
        dim = flat_obs_dim(observation_space)
        self.actions = ActionCoding(action_space, "ICM", device)
        self.discrete, self.act_dim = self.actions.discrete, self.actions.dim
        self.encoder = mlp(dim, self.latent, self.hidden).to(device)
        self.inverse = mlp(2 * self.latent, self.act_dim, self.hidden).to(device)
        self.forward_model = mlp(self.latent + self.act_dim, self.latent, self.hidden).to(device)
        params = [*self.encoder.parameters(), *self.inverse.parameters(), *self.forward_model.parameters()]
        self.opt = th.optim.Adam(params, lr=self.lr)
        self._rng = np.random.default_rng(self.seed)

    def _tensors(self, batch: TransitionBatch) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        m = batch.shape[0] * batch.shape[1]
        o = th.as_tensor(batch.obs.reshape(m, -1), dtype=th.float32, device=self.device)
        o2 = th.as_tensor(batch.next_obs.reshape(m, -1), dtype=th.float32, device=self.device)
        act = self.actions.inputs(np.asarray(batch.actions).reshape(m, -1))
        return o, act, o2

    def _losses(self, o: th.Tensor, act: th.Tensor, o2: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        z, z2 = self.encoder(o), self.encoder(o2)
        fwd = 0.5 * ((self.forward_model(th.cat([z.detach(), act], 1)) - z2.detach()) ** 2).sum(1)
        logits = self.inverse(th.cat([z, z2], 1))
        if self.discrete:
            inv = F.cross_entropy(logits, act.argmax(1), reduction="none")
        else:
            inv = ((logits - act) ** 2).mean(1)
        return fwd, inv

    def compute(self, batch: TransitionBatch) -> np.ndarray:
        with th.no_grad():
            fwd, _ = self._losses(*self._tensors(batch))
        return (self.eta * fwd).cpu().numpy().reshape(batch.shape)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        o, act, o2 = self._tensors(batch)
        idx = th.as_tensor(self._rng.permutation(len(o)), device=self.device)
        fl, il = [], []
        for k in range(0, len(o), self.batch_size):
            j = idx[k:k + self.batch_size]
            fwd, inv = self._losses(o[j], act[j], o2[j])
            loss = self.beta * fwd.mean() + (1 - self.beta) * inv.mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            fl.append(fwd.mean().item())
            il.append(inv.mean().item())
        return {"icm_forward_loss": float(np.mean(fl)), "icm_inverse_loss": float(np.mean(il))} if fl else {}

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).state_dict() for k in ("encoder", "inverse", "forward_model", "opt")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            getattr(self, k).load_state_dict(v)


register_bonus("icm", ICM)
