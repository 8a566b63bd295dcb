"""ONI: an intrinsic reward distilled from LLM labels of transitions, learned online.

After Zheng et al. (2024), "Online Intrinsic Rewards for Decision Making Agents from LLM Feedback"
(ONI). A labeller (an LLM through :class:`~rewardsmith.intrinsic.labellers.CoderLabeller`, or a
rule) rates a few transitions per update, described in words; the labels are requested in a
background thread, cached by description and distilled into a small classifier on the reward
states, whose probability is the bonus. The policy never waits for the LLM, and the LLM sees only a
small fraction of the steps (:attr:`ONI.labelled_fraction`).

Faithful to the paper: asynchronous labelling that never blocks the learner; deduplication and a
cache keyed by the transition's text, so identical transitions are never asked twice; a binary
classifier trained by cross-entropy on every label gathered so far, whose output is the reward.

Not faithful: ONI labels NetHack's text messages with a local LLM served at scale and retrieves
every message; here a transition is the task's reward-state variables, rounded, with their
change (:func:`~rewardsmith.intrinsic.labellers.describe_transition`), at most ``max_labels``
per update are sampled at random, several go in one prompt, and the classifier reads the state
after the step only (not the change). The paper's ranking and regression variants are not built.
"""
from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import torch as th
from torch import nn

from rewardsmith.errors import RewardsmithError
from rewardsmith.intrinsic.base import Bonus, TransitionBatch, register_bonus
from rewardsmith.intrinsic.labellers import CoderLabeller, Label, Labeller, OfflineLabeller, describe_transition
from rewardsmith.intrinsic.rnd import ObsNorm, mlp
from rewardsmith.tasks import TaskSpec, get_task


class ONI(Bonus):
    """The ONI bonus: ``P(label = 1 | state after the step)`` from a classifier trained on labels.

    Args:
        task: the task (its variables describe the transitions); required.
        labeller: who labels; default an :class:`OfflineLabeller` on the task's sparse reward.
        max_labels: at most this many transitions labelled (asked, or answered from the cache) per update.
        label_fraction: and at most this fraction of the update's transitions.
        decimals: rounding of the descriptions (the cache key).
        hidden, lr, epochs, batch_size: the classifier (an MLP on per-feature normalised states),
            trained for ``epochs`` passes over all labels so far at every update.
        max_dataset: the newest labelled states kept for training.
        workers: threads sending labelling requests (1: the coder need not be thread-safe).
        seed: seeds the classifier and the choice of transitions.

    The classifier lives on the CPU whatever the algorithm's device (it is tiny).
    Labels still in flight are not part of :meth:`state_dict`.
    """

    name = "oni"
    episodic = False

    def __init__(self, task: str | TaskSpec | None = None, labeller: Labeller | str | None = "auto", max_labels: int = 64,
                 label_fraction: float = 0.1, decimals: int = 2, hidden: int = 64, lr: float = 1e-3,
                 epochs: int = 3, batch_size: int = 256, max_dataset: int = 50_000, workers: int = 1,
                 seed: int | None = 0) -> None:
        if task is None:
            raise RewardsmithError("the ONI bonus needs the task: ONI(task=...) or make_bonus('oni', task=...); "
                                   "the name 'oni' alone cannot build it (pass the bonus object to Trainer)")
        if max_labels < 1 or not 0 < label_fraction <= 1:
            raise ValueError(f"need max_labels >= 1 and 0 < label_fraction <= 1, got {max_labels}, {label_fraction}")
        self.task = get_task(task)
        self.labeller: Labeller = _labeller(labeller, self.task)
        self.max_labels, self.label_fraction, self.decimals = max_labels, label_fraction, decimals
        self.lr, self.epochs, self.batch_size, self.max_dataset = lr, epochs, batch_size, max_dataset
        dim = self.task.state_size
        with th.random.fork_rng():
            if seed is not None:
                th.manual_seed(seed)
            self.net: nn.Module = mlp(dim, 1, hidden)
        self.opt = th.optim.Adam(self.net.parameters(), lr=lr)
        self.norm = ObsNorm(dim)
        self._rng = np.random.default_rng(seed)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oni-labeller")
        self._futures: list[tuple[Future, list[str]]] = []
        self._pending: dict[str, list[np.ndarray]] = {}  # description -> states waiting for its label
        self.cache: dict[str, float] = {}
        self._x, self._y = np.zeros((0, dim)), np.zeros(0)
        self._prev: np.ndarray | None = None  # the last states of the previous batch
        self._prev_done: np.ndarray | None = None
        self.seen = self.labelled = self.cache_hits = self.requested = self._errors = 0
        self.trained = False
        self.last_error: str | None = None
        self.last_update: dict[str, float] = {}

    # ---- bookkeeping -----------------------------------------------------------------------
    @property
    def labelled_fraction(self) -> float:
        """Transitions that got a label (asked or from the cache) / transitions seen by :meth:`update`."""
        return self.labelled / self.seen if self.seen else 0.0

    @property
    def errors(self) -> int:
        """Labelling requests that gave no labels (the labeller's count plus any that raised)."""
        return self._errors + int(getattr(self.labeller, "errors", 0))

    @property
    def n_labels(self) -> int:
        """Labelled states in the training set."""
        return len(self._y)

    @property
    def in_flight(self) -> int:
        """Labelling requests not collected yet."""
        return len(self._futures)

    def _states(self, batch: TransitionBatch) -> np.ndarray:
        if batch.states is None:
            raise RewardsmithError("the ONI bonus needs the task's reward states (TransitionBatch.states): train "
                                   "through a RewardVecEnv (rewardsmith's Trainer does), or put "
                                   "info['reward_state'] in every step's info")
        states = np.asarray(batch.states, dtype=np.float64)
        if states.shape[-1] != self.task.state_size:
            raise RewardsmithError(f"ONI: reward states have {states.shape[-1]} values, task "
                                   f"{self.task.name!r} has {self.task.state_size}")
        return states

    def _add(self, states: list[np.ndarray], label: float) -> None:
        if not states:
            return
        self._x = np.concatenate([self._x, np.stack(states)])[-self.max_dataset:]
        self._y = np.concatenate([self._y, np.full(len(states), label)])[-self.max_dataset:]
        self.labelled += len(states)

    def _collect(self) -> None:
        """Take in the labels of every finished request (never waits)."""
        still: list[tuple[Future, list[str]]] = []
        for future, descs in self._futures:
            if not future.done():
                still.append((future, descs))
                continue
            labels: list[Label]
            try:
                labels = list(future.result())
                if len(labels) != len(descs):
                    raise ValueError(f"the labeller gave {len(labels)} labels for {len(descs)} transitions")
            except Exception as exc:  # a labeller must never stop training
                self._errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                labels = [None] * len(descs)
            for desc, label in zip(descs, labels):
                waiting = self._pending.pop(desc, [])
                if label is not None:  # unlabelled: forgotten, may be asked again later
                    self.cache[desc] = float(label)
                    self._add(waiting, float(label))
        self._futures = still

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for the requests in flight and collect them; whether all came back."""
        wait([f for f, _ in self._futures], timeout=timeout)
        self._collect()
        return not self._futures

    # ---- the bonus ---------------------------------------------------------------------------
    def _logits(self, x: np.ndarray) -> th.Tensor:
        return self.net(th.as_tensor(self.norm(x))).squeeze(-1)

    def compute(self, batch: TransitionBatch) -> np.ndarray:
        states = self._states(batch)
        self._collect()
        if not self.trained:
            return np.zeros(batch.shape)
        with th.no_grad():
            p = th.sigmoid(self._logits(states.reshape(-1, states.shape[-1]))).numpy()
        return p.astype(np.float64).reshape(batch.shape)

    def _previous(self, states: np.ndarray, dones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state before each step, and where it is unknown (an episode's first step)."""
        prev, unknown = np.empty_like(states), np.zeros(dones.shape, dtype=bool)
        prev[1:], unknown[1:] = states[:-1], dones[:-1]
        if self._prev is not None and self._prev.shape == states[0].shape:
            prev[0], unknown[0] = self._prev, self._prev_done
        else:
            unknown[0] = True
        self._prev, self._prev_done = states[-1].copy(), np.asarray(dones[-1], dtype=bool).copy()
        return prev, unknown

    def _request(self, states: np.ndarray, prev: np.ndarray, unknown: np.ndarray) -> None:
        """Label up to ``k`` random transitions: from the cache, joining a pending request, or asked anew."""
        k = min(self.max_labels, math.ceil(self.label_fraction * len(states)))
        new: list[str] = []
        new_states: list[np.ndarray] = []
        for i in self._rng.permutation(len(states))[:k]:
            desc = describe_transition(self.task, None if unknown[i] else prev[i], states[i], self.decimals)
            if desc in self.cache:
                self.cache_hits += 1
                self._add([states[i]], self.cache[desc])
            elif desc in self._pending:
                self._pending[desc].append(states[i])
            else:
                self._pending[desc] = [states[i]]
                new.append(desc)
                new_states.append(states[i])
        size = max(1, int(getattr(self.labeller, "batch_size", len(new) or 1)))
        for j in range(0, len(new), size):
            descs = new[j:j + size]
            self._futures.append((self._executor.submit(self.labeller.label, descs, np.stack(new_states[j:j + size])),
                                  descs))
            self.requested += len(descs)

    def _train(self) -> float | None:
        if not len(self._y):
            return None
        losses = []
        y_all = th.as_tensor(self._y, dtype=th.float32)
        for _ in range(self.epochs):
            idx = self._rng.permutation(len(self._y))
            for j in range(0, len(idx), self.batch_size):
                b = idx[j:j + self.batch_size]
                loss = nn.functional.binary_cross_entropy_with_logits(self._logits(self._x[b]), y_all[b])
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                losses.append(loss.item())
        self.trained = True
        return float(np.mean(losses))

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        states = self._states(batch)
        self._collect()
        flat = states.reshape(-1, states.shape[-1])
        self.norm.update(flat)
        self.seen += len(flat)
        prev, unknown = self._previous(states, np.asarray(batch.dones))
        self._request(flat, prev.reshape(flat.shape), unknown.reshape(-1))
        loss = self._train()
        logs = {"oni_labelled_fraction": self.labelled_fraction, "oni_labels": float(self.n_labels),
                "oni_errors": float(self.errors), "oni_cache_hits": float(self.cache_hits),
                "oni_in_flight": float(self.in_flight)}
        if loss is not None:
            logs["oni_loss"] = loss
        self.last_update = logs
        return logs

    # ---- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "norm": [s.state_dict() for s in self.norm.stats], "x": self._x.copy(), "y": self._y.copy(),
                "cache": dict(self.cache), "trained": self.trained,
                "counts": {"seen": self.seen, "labelled": self.labelled, "cache_hits": self.cache_hits,
                           "requested": self.requested, "errors": self._errors}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        for s, d in zip(self.norm.stats, state["norm"]):
            s.load_state_dict(d)
        self._x, self._y = np.asarray(state["x"], dtype=np.float64), np.asarray(state["y"], dtype=np.float64)
        self.cache, self.trained = dict(state["cache"]), bool(state["trained"])
        c = state["counts"]
        self.seen, self.labelled, self.cache_hits = c["seen"], c["labelled"], c["cache_hits"]
        self.requested, self._errors = c["requested"], c["errors"]

    def close(self) -> None:
        """Stop the labelling threads (requests not started are dropped)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _labeller(labeller: Labeller | str | None, task: TaskSpec) -> Labeller:
    """``"auto"``: an LLM (the OpenAI coder, from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``) when one
    is configured, else the offline rule; ``"openai"`` / ``"offline"`` force one; None: offline."""
    if labeller is None or labeller == "offline":
        return OfflineLabeller(task)
    if isinstance(labeller, str):
        from rewardsmith.coders import default_coder_kind, make_coder

        kind = default_coder_kind() if labeller == "auto" else labeller
        if kind not in ("openai", "offline"):
            raise ValueError(f"unknown ONI labeller {labeller!r}: use auto, openai or offline (or pass a Labeller)")
        if kind == "offline":
            return OfflineLabeller(task)
        return CoderLabeller(make_coder("openai", temperature=0.0), task)
    return labeller


register_bonus("oni", ONI)
