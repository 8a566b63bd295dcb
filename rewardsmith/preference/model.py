"""Reward models learned from pairwise preferences (Bradley-Terry), and the learned reward as a source.

* :class:`RewardNet`: an MLP ``r(x)`` per step, with input normalisation whose running mean/std
  are *buffers*, so they travel with the ``state_dict`` (imitation lost its normalisation on
  serialisation, issue #437).
* :func:`bradley_terry_loss`: ``P(left > right) = sigmoid(sum r_left - sum r_right)``, binary
  cross-entropy against soft labels (0.5 = tie), vectorised over the batch.
* :class:`RewardModel`: an ensemble of ``k`` nets, each trained on its own bootstrap resample of
  the comparisons (bagging), early-stopped on held-out accuracy; predicts the mean, the
  disagreement (std) and a conservative ``mean - k * std``. ``save``/``load`` keep config,
  normalisation and weights; runs on ``cpu`` or ``cuda``.
* :class:`LearnedReward`: the model as a :class:`~rewardsmith.sources.RewardSource` (components
  ``["learned", "learned_std"]``), for :class:`~rewardsmith.wrappers.RewardVecEnv`,
  :func:`~rewardsmith.wrappers.relabel` and the Trainer like any other source.

Label convention: ``1`` = left preferred (see :mod:`rewardsmith.preference.segments`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn

from rewardsmith.preference.segments import PreferenceBatch
from rewardsmith.sources import Transitions
from rewardsmith.tasks import TaskSpec

FORMAT = "rewardsmith.preference.RewardModel/1"
_CHUNK = 65536


def bradley_terry_loss(r_left: th.Tensor, r_right: th.Tensor, labels: th.Tensor) -> th.Tensor:
    """Mean Bradley-Terry loss over ``N`` comparisons.

    Args:
        r_left, r_right: ``(N, L)`` per-step predicted rewards of the two segments.
        labels: ``(N,)`` in ``[0, 1]``: 1 = left preferred, 0 = right, 0.5 = tie (soft labels allowed).

    ``logit = sum(r_left) - sum(r_right)``, loss = ``BCE(sigmoid(logit), label)`` computed stably
    from the logits; one vectorised call, no per-pair loop. A tie's loss is smallest when the
    two sums are equal.
    """
    if r_left.shape != r_right.shape or r_left.ndim != 2:
        raise ValueError(f"r_left and r_right must be equal (N, L) tensors, got {tuple(r_left.shape)} "
                         f"and {tuple(r_right.shape)}")
    logits = r_left.sum(dim=1) - r_right.sum(dim=1)
    labels = labels.to(dtype=logits.dtype, device=logits.device).reshape(logits.shape)
    return F.binary_cross_entropy_with_logits(logits, labels)


class RewardNet(nn.Module):
    """A per-step reward ``r(x)``: input normalisation, then an MLP with ReLU hidden layers.

    The normalisation's running ``norm_mean``, ``norm_var`` and ``norm_count`` are buffers (saved
    and loaded with the ``state_dict``); :meth:`update_normalization` folds in more data.
    Normalised inputs are clipped to ``+-clip``; a feature with (near) zero spread is only centred.
    """

    def __init__(self, input_dim: int, hidden: Sequence[int] = (64, 64), clip: float = 10.0) -> None:
        super().__init__()
        self.input_dim, self.hidden, self.clip = int(input_dim), tuple(int(h) for h in hidden), float(clip)
        layers: list[nn.Module] = []
        d = self.input_dim
        for h in self.hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("norm_mean", th.zeros(self.input_dim, dtype=th.float64))
        self.register_buffer("norm_var", th.ones(self.input_dim, dtype=th.float64))
        self.register_buffer("norm_count", th.zeros((), dtype=th.float64))

    @th.no_grad()
    def update_normalization(self, x: th.Tensor | np.ndarray) -> None:
        """Fold a batch ``(..., D)`` into the running mean/variance (parallel Welford/Chan update)."""
        x = th.as_tensor(x, dtype=th.float64, device=self.norm_mean.device).reshape(-1, self.input_dim)
        n = x.shape[0]
        if n == 0:
            return
        b_mean, b_var = x.mean(dim=0), x.var(dim=0, unbiased=False)
        c = self.norm_count
        tot = c + n
        delta = b_mean - self.norm_mean
        m2 = self.norm_var * c + b_var * n + delta ** 2 * c * n / tot
        self.norm_mean.add_(delta * n / tot)
        self.norm_var.copy_(m2 / tot)
        self.norm_count.fill_(float(tot))

    def normalize(self, x: th.Tensor) -> th.Tensor:
        """``clip((x - mean) / std)`` with the running statistics (identity before any update)."""
        std = self.norm_var.sqrt()
        std = th.where(std < 1e-6, th.ones_like(std), std)
        z = (x.to(th.float64) - self.norm_mean) / std
        return z.clamp(-self.clip, self.clip).to(th.float32)

    def forward(self, x: th.Tensor) -> th.Tensor:
        """Rewards ``(...)`` for inputs ``(..., D)``."""
        return self.mlp(self.normalize(x)).squeeze(-1)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of non-tie comparisons whose preferred side has the larger predicted return (NaN if none)."""
    strict = labels != 0.5
    if not strict.any():
        return float("nan")
    return float(np.mean((logits[strict] > 0) == (labels[strict] > 0.5)))


class RewardModel:
    """An ensemble of ``k`` :class:`RewardNet` s learned from preferences with bagging.

    Args:
        input_dim: feature size per step (``D`` of the batches; the task's ``state_size`` for a
            state-only reward).
        k: ensemble size.
        hidden: hidden layer widths of each member.
        device: ``"cpu"``, ``"cuda"`` or a torch device.
        seed: seeds the members' initialisation and the data splits/resamples of :meth:`fit`.
        use: what the features are (``"state"`` or ``"state_action"``), recorded for
            :class:`LearnedReward` and kept by :meth:`save`.
    """

    def __init__(self, input_dim: int, k: int = 3, hidden: Sequence[int] = (64, 64), device: str | th.device = "cpu",
                 seed: int | None = 0, use: str = "state") -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.input_dim, self.k, self.hidden, self.seed, self.use = int(input_dim), int(k), tuple(hidden), seed, use
        self.device = th.device(device)
        with th.random.fork_rng(devices=[]):
            if seed is not None:
                th.manual_seed(seed)
            self.members = [RewardNet(self.input_dim, self.hidden) for _ in range(self.k)]
        for m in self.members:
            m.to(self.device)
        self._rng = np.random.default_rng(seed)
        self.history: dict[str, Any] = {}

    # ------------------------------------------------------------------ training
    def _t(self, x: np.ndarray) -> th.Tensor:
        return th.as_tensor(np.asarray(x), dtype=th.float64, device=self.device)

    def fit(self, batch: PreferenceBatch, epochs: int = 100, lr: float = 1e-3, val_fraction: float = 0.2,
            patience: int = 10, batch_size: int = 64, weight_decay: float = 0.0, bootstrap: bool = True,
            update_normalization: bool = True, stop_on: str = "accuracy") -> dict[str, Any]:
        """Train every member on its own bootstrap resample of the training comparisons.

        A random ``val_fraction`` of the comparisons is held out; after each epoch the ensemble's
        held-out accuracy (mean prediction, ties left out) is measured, training stops after
        ``patience`` epochs without improvement (better accuracy, or equal accuracy and lower
        loss), and the best epoch's weights are restored. With no held-out data it runs all epochs.

        ``stop_on="loss"`` keys the early stopping on held-out loss instead (better-calibrated
        probabilities: accuracy keeps improving while the logits grow over-confident).

        Returns (and keeps in :attr:`history`): per-epoch lists ``epoch``, ``train_loss``,
        ``val_loss``, ``val_acc``, and ``best_epoch``, ``stopped_early``, ``n_train``, ``n_val``.
        """
        if stop_on not in ("accuracy", "loss"):
            raise ValueError(f"stop_on must be 'accuracy' or 'loss', got {stop_on!r}")
        if batch.input_dim != self.input_dim:
            raise ValueError(f"batch has {batch.input_dim} features per step, the model {self.input_dim}")
        n = len(batch)
        if n == 0:
            raise ValueError("empty preference batch")
        perm = self._rng.permutation(n)
        n_val = int(round(n * val_fraction)) if 0 < val_fraction < 1 else 0
        n_val = min(n_val, n - 1)
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        left, right, label = self._t(batch.left), self._t(batch.right), self._t(batch.label)
        if update_normalization:
            feats = np.concatenate([batch.left[tr_idx], batch.right[tr_idx]])
            for m in self.members:
                m.update_normalization(feats)
        n_tr = len(tr_idx)
        bags = [tr_idx[self._rng.integers(0, n_tr, n_tr)] if bootstrap else tr_idx.copy() for _ in self.members]
        opts = [th.optim.Adam(m.parameters(), lr=lr, weight_decay=weight_decay) for m in self.members]
        hist: dict[str, Any] = {"epoch": [], "train_loss": [], "val_loss": [], "val_acc": []}
        best = (-math.inf, math.inf)
        best_state = [copy.deepcopy(m.state_dict()) for m in self.members]
        best_epoch, since, stopped = 0, 0, False
        for epoch in range(1, int(epochs) + 1):
            losses = []
            for m, opt, bag in zip(self.members, opts, bags):
                m.train()
                order = bag[self._rng.permutation(len(bag))]
                for s in range(0, len(order), batch_size):
                    idx = th.as_tensor(order[s:s + batch_size], device=self.device)
                    l_, r_ = left[idx], right[idx]
                    both = m(th.cat([l_, r_]))  # one forward pass for both sides
                    loss = bradley_terry_loss(both[:len(idx)], both[len(idx):], label[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    losses.append(loss.item())
            hist["epoch"].append(epoch)
            hist["train_loss"].append(float(np.mean(losses)))
            if n_val:
                vb = batch.subset(val_idx)
                logits = self.logits(vb)
                vloss = float(F.binary_cross_entropy_with_logits(th.as_tensor(logits), th.as_tensor(vb.label)))
                vacc = _accuracy(logits, vb.label)
                hist["val_loss"].append(vloss)
                hist["val_acc"].append(vacc)
                score = (-vloss, vloss) if stop_on == "loss" else (vacc if not math.isnan(vacc) else -vloss, vloss)
                if score[0] > best[0] or (score[0] == best[0] and score[1] < best[1]):
                    best, best_epoch, since = score, epoch, 0
                    best_state = [copy.deepcopy(m.state_dict()) for m in self.members]
                else:
                    since += 1
                    if since >= patience:
                        stopped = True
                        break
            else:
                hist["val_loss"].append(float("nan"))
                hist["val_acc"].append(float("nan"))
                best_epoch = epoch
        if n_val:
            for m, sd in zip(self.members, best_state):
                m.load_state_dict(sd)
        for m in self.members:
            m.eval()
        hist.update(best_epoch=best_epoch, stopped_early=stopped, n_train=n_tr, n_val=n_val)
        self.history = hist
        return hist

    # ---------------------------------------------------------------- prediction
    @th.no_grad()
    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """Each member's per-step reward: ``(k, ...)`` for inputs ``(..., D)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"inputs must have {self.input_dim} features in the last axis, got shape {x.shape}")
        flat = x.reshape(-1, self.input_dim)
        out = np.empty((self.k, flat.shape[0]), dtype=np.float64)
        for j, m in enumerate(self.members):
            m.eval()
            for s in range(0, flat.shape[0], _CHUNK):
                xt = th.as_tensor(flat[s:s + _CHUNK], dtype=th.float64, device=self.device)
                out[j, s:s + _CHUNK] = m(xt).double().cpu().numpy()
        return out.reshape((self.k,) + x.shape[:-1])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The ensemble's mean reward, ``(...)`` for inputs ``(..., D)`` (e.g. ``(n, D) -> (n,)``)."""
        return self.predict_members(x).mean(axis=0)

    def std(self, x: np.ndarray) -> np.ndarray:
        """The members' disagreement: the (population) std of their rewards, ``(...)``."""
        return self.predict_members(x).std(axis=0)

    def aggregate(self, x: np.ndarray, how: str = "mean", k: float = 1.0) -> np.ndarray:
        """``how="mean"``: the mean; ``how="conservative"``: ``mean - k * std`` (never above the mean for k >= 0)."""
        r = self.predict_members(x)
        if how == "mean":
            return r.mean(axis=0)
        if how == "conservative":
            return r.mean(axis=0) - k * r.std(axis=0)
        raise ValueError(f"how must be 'mean' or 'conservative', got {how!r}")

    def predict_returns(self, segments: np.ndarray) -> np.ndarray:
        """Predicted segment returns (sum of the mean reward over steps): ``(N, L, D) -> (N,)``."""
        return self.predict(segments).sum(axis=-1)

    def logits(self, batch: PreferenceBatch) -> np.ndarray:
        """``(N,)`` predicted ``return(left) - return(right)`` of the ensemble mean."""
        return self.predict_returns(batch.left) - self.predict_returns(batch.right)

    def probability(self, batch: PreferenceBatch) -> np.ndarray:
        """``(N,)`` predicted probability that the left segment is preferred."""
        return 1.0 / (1.0 + np.exp(-self.logits(batch)))

    def accuracy(self, batch: PreferenceBatch) -> float:
        """Share of the batch's non-tie comparisons the ensemble mean gets right (NaN if all ties)."""
        return _accuracy(self.logits(batch), batch.label)

    # --------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        """What :meth:`load` needs to rebuild the model."""
        return {"input_dim": self.input_dim, "k": self.k, "hidden": list(self.hidden), "seed": self.seed,
                "use": self.use}

    def state_dict(self) -> dict[str, Any]:
        """Config and every member's weights and normalisation buffers (tensors on the CPU)."""
        return {"format": FORMAT, "config": self.config(),
                "members": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load member weights and normalisation (from :meth:`state_dict`)."""
        if len(state["members"]) != self.k:
            raise ValueError(f"state has {len(state['members'])} members, the model {self.k}")
        for m, sd in zip(self.members, state["members"]):
            m.load_state_dict(sd)
            m.eval()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write config, weights and normalisation to ``path`` (``torch.save``)."""
        th.save(self.state_dict(), os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | th.device = "cpu") -> RewardModel:
        """A model saved by :meth:`save`, on ``device``."""
        state = th.load(os.fspath(path), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved RewardModel ({FORMAT})")
        cfg = state["config"]
        model = cls(cfg["input_dim"], k=cfg["k"], hidden=tuple(cfg["hidden"]), device=device, seed=cfg["seed"],
                    use=cfg.get("use", "state"))
        model.load_state_dict(state)
        return model

    def __repr__(self) -> str:
        return f"RewardModel(input_dim={self.input_dim}, k={self.k}, hidden={self.hidden}, device={self.device})"


class LearnedReward:
    """A :class:`RewardModel` as a reward source over a task's flat reward states.

    ``compute(t)`` reads ``t.state`` (``(n, task.state_size)``; with a ``"state_action"`` model,
    ``t.action`` is appended). Components: ``learned`` (the ensemble mean) and ``learned_std``
    (the members' std). The total is the mean (``how="mean"``) or ``mean - k * std``
    (``how="conservative"``), times ``scale`` plus ``shift`` (:meth:`standardize` sets both).
    """

    def __init__(self, model: RewardModel, task: TaskSpec, how: str = "mean", k: float = 1.0,
                 scale: float = 1.0, shift: float = 0.0) -> None:
        if how not in ("mean", "conservative"):
            raise ValueError(f"how must be 'mean' or 'conservative', got {how!r}")
        self.model, self.task, self.how, self.k, self.scale = model, task, how, float(k), float(scale)
        self.shift = float(shift)
        if model.use == "state" and model.input_dim != task.state_size:
            raise ValueError(f"model reads {model.input_dim} features but task {task.name!r} has "
                             f"state_size {task.state_size}")
        if model.use == "state_action" and model.input_dim <= task.state_size:
            raise ValueError(f"a state_action model needs more than {task.state_size} inputs, has {model.input_dim}")
        self._components = ["learned", "learned_std"]

    @property
    def components(self) -> list[str]:
        """``["learned", "learned_std"]``."""
        return self._components

    def compute(self, t: Transitions, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(total (n,), components (n, 2))`` for the batch, written into ``out`` when given."""
        x = np.asarray(t.state, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.task.state_size:
            raise ValueError(f"states must have shape (n, {self.task.state_size}), got {x.shape}")
        if self.model.use == "state_action":
            if t.action is None:
                raise ValueError("this learned reward reads actions, but the transitions have none")
            x = np.concatenate([x, np.asarray(t.action, dtype=np.float64).reshape(len(x), -1)], axis=1)
        r = self.model.predict_members(x) * self.scale
        mean, std = r.mean(axis=0) + self.shift, r.std(axis=0)
        total = mean if self.how == "mean" else mean - self.k * std
        if out is None:
            out = (np.empty(len(x)), np.empty((len(x), 2)))
        out[0][:] = total
        out[1][:, 0] = mean
        out[1][:, 1] = std
        return out

    def standardize(self, states: np.ndarray) -> tuple[float, float]:
        """Set ``scale``/``shift`` so that the ensemble mean has mean 0 and std 1 over ``states``
        (``(n, D)`` features); returns them.

        A Bradley-Terry model fixes a reward only up to its scale, which drifts from fit to fit;
        an agent trained while the reward is refitted (PbRL) then sees its reward's scale jump.
        Standardising after every fit keeps what the agent sees on one scale (an affine map with a
        positive factor leaves the task's optimal policies as they are when episodes have a fixed
        length, as Pendulum's and Reacher's do).
        """
        r = self.model.predict(np.asarray(states, dtype=np.float64))
        sd = float(np.std(r))
        self.scale = 1.0 / sd if sd > 1e-8 else 1.0
        self.shift = -float(np.mean(r)) * self.scale
        return self.scale, self.shift

    def __repr__(self) -> str:
        return f"LearnedReward({self.task.name}, {self.model!r}, how={self.how!r})"


__all__ = ["LearnedReward", "RewardModel", "RewardNet", "bradley_terry_loss"]
