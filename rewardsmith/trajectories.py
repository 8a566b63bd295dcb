"""Stored trajectories for pre-screening reward programs: episodes of reward-state transitions with their true fitness.

An :class:`EpisodeSet` holds a few whole episodes as one :class:`~rewardsmith.sources.Transitions`
batch (the reward state before and after every step, in the task's flat layout), which episode
each step belongs to, and each episode's true fitness as :class:`~rewardsmith.wrappers.TaskWrapper`
measured it. Two kinds are stored in a run directory:

* rollouts of a uniform random policy (:func:`random_rollouts`), once per run
  (``screen/random.npz``);
* the evaluation episodes of every trained candidate (``rounds/rNN/cMM/episodes.npz``), recorded
  by :func:`rewardsmith.train.evaluate` through an :class:`EpisodeRecorder`.

Files are ``.npz`` written atomically (a temporary file, then ``os.replace``); a file that cannot
be read counts as missing (:meth:`EpisodeSet.load` returns None).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.sources import Transitions
from rewardsmith.tasks import TaskSpec


@dataclass
class EpisodeSet:
    """Whole episodes as one batch of transitions.

    Attributes:
        transitions: every step of every episode, episode after episode.
        episode: ``(n,)`` int, the episode (``0 .. n_episodes-1``) of each step.
        fitness: ``(n_episodes,)`` the true fitness of each episode.
        origin: ``(n_episodes,)`` str, where each episode comes from (``"random"`` or a candidate's name).
    """

    transitions: Transitions
    episode: np.ndarray
    fitness: np.ndarray
    origin: np.ndarray

    @property
    def n_steps(self) -> int:
        """Steps stored."""
        return self.transitions.n

    @property
    def n_episodes(self) -> int:
        """Episodes stored."""
        return len(self.fitness)

    def returns(self, per_step: np.ndarray) -> np.ndarray:
        """Each episode's sum of ``per_step`` values (e.g. a reward's per-step totals)."""
        return np.bincount(self.episode, weights=per_step, minlength=self.n_episodes)

    def take(self, episodes: np.ndarray | list[int]) -> EpisodeSet:
        """A set of only the given episodes (renumbered in the order given)."""
        keep = np.asarray(episodes, dtype=np.int64)
        parts = [np.flatnonzero(self.episode == e) for e in keep]
        rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        t = self.transitions
        sub = Transitions(t.prev_state[rows], None if t.action is None else t.action[rows], t.state[rows],
                          t.terminated[rows], t.truncated[rows])
        return EpisodeSet(sub, np.repeat(np.arange(len(keep)), [len(r) for r in parts]), self.fitness[keep],
                          self.origin[keep])

    @classmethod
    def concat(cls, sets: list[EpisodeSet]) -> EpisodeSet | None:
        """One set holding every episode of ``sets`` (None when there are none)."""
        sets = [s for s in sets if s is not None and s.n_episodes and s.n_steps]
        if not sets:
            return None
        offsets = np.cumsum([0] + [s.n_episodes for s in sets[:-1]])
        ts = [s.transitions for s in sets]
        actions = None if any(t.action is None for t in ts) or len({t.action.shape[1:] for t in ts}) > 1 \
            else np.concatenate([t.action for t in ts])
        t = Transitions(np.concatenate([t.prev_state for t in ts]), actions, np.concatenate([t.state for t in ts]),
                        np.concatenate([t.terminated for t in ts]), np.concatenate([t.truncated for t in ts]))
        return cls(t, np.concatenate([s.episode + o for s, o in zip(sets, offsets)]),
                   np.concatenate([s.fitness for s in sets]), np.concatenate([s.origin for s in sets]))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a compressed ``.npz`` at ``path`` atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        t = self.transitions
        arrays: dict[str, Any] = {"prev_state": t.prev_state, "state": t.state, "terminated": t.terminated,
                                  "truncated": t.truncated, "episode": self.episode, "fitness": self.fitness,
                                  "origin": np.asarray(self.origin, dtype=str)}
        if t.action is not None:
            arrays["action"] = t.action
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], state_size: int | None = None) -> EpisodeSet | None:
        """The set saved at ``path``; None when it is missing, unreadable or of another state layout."""
        try:
            with np.load(path, allow_pickle=False) as z:
                action = z["action"].astype(np.float64) if "action" in z.files else None
                t = Transitions(np.ascontiguousarray(z["prev_state"], dtype=np.float64), action,
                                np.ascontiguousarray(z["state"], dtype=np.float64),
                                z["terminated"].astype(bool), z["truncated"].astype(bool))
                out = cls(t, z["episode"].astype(np.int64), z["fitness"].astype(np.float64), z["origin"].astype(str))
            t.validate()
        except Exception:  # missing, cut short (not a zip), other keys: counts as missing
            return None
        if (state_size is not None and t.state.shape[1] != state_size) or len(out.episode) != t.n \
                or (t.n and (out.episode.min() < 0 or out.episode.max() >= out.n_episodes)):
            return None
        return out


class EpisodeRecorder:
    """Records whole episodes of a ``DummyVecEnv`` of :class:`~rewardsmith.wrappers.TaskWrapper` envs.

    Call :meth:`start` after the VecEnv's reset, :meth:`step` after each step, and :meth:`end` for
    each env whose episode ended (``keep`` the fitness, or None to drop the episode). Recording
    never raises: the first error stops it and is kept in :attr:`error`.
    """

    def __init__(self, origin: str = "") -> None:
        self.origin = origin
        self.error: str | None = None
        self._wrappers: list[Any] = []
        self._prev: list[np.ndarray] = []
        self._open: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]] = []
        self._done: list[tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]], float]] = []

    def _fail(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"

    def start(self, wrappers: list[Any]) -> None:
        """Begin with the (already reset) TaskWrappers of the VecEnv's envs."""
        try:
            self._wrappers = list(wrappers)
            self._prev = [np.array(w.last_state, dtype=np.float64) for w in self._wrappers]
            self._open = [[] for _ in self._wrappers]
        except Exception as exc:
            self._fail(exc)

    def step(self, actions: Any, infos: list[dict]) -> None:
        """Record every env's transition of the step just taken."""
        if self.error is not None:
            return
        try:
            acts = np.asarray(actions, dtype=np.float64).reshape(len(self._wrappers), -1)
            for i, w in enumerate(self._wrappers):
                state = np.array(w.step_state, dtype=np.float64)
                self._open[i].append((self._prev[i], acts[i].copy(), state,
                                      infos[i].get("episode_end") == "terminated"))
                self._prev[i] = np.array(w.last_state, dtype=np.float64)  # the reset state after a done
        except Exception as exc:
            self._fail(exc)

    def end(self, i: int, fitness: float | None) -> None:
        """Env ``i``'s episode ended: keep it with ``fitness``, or drop it (None)."""
        if self.error is not None:
            return
        try:
            if fitness is not None and self._open[i]:
                self._done.append((self._open[i], float(fitness)))
            self._open[i] = []
        except Exception as exc:
            self._fail(exc)

    def episodes(self) -> EpisodeSet | None:
        """The kept episodes (None when there are none or recording failed)."""
        if self.error is not None or not self._done:
            return None
        steps = [s for ep, _ in self._done for s in ep]
        term = np.array([s[3] for s in steps], dtype=bool)
        trunc = np.zeros_like(term)
        ends = np.cumsum([len(ep) for ep, _ in self._done]) - 1
        trunc[ends] = ~term[ends]  # an episode's last step ended it: a true end or a time limit
        t = Transitions(np.stack([s[0] for s in steps]), np.stack([s[1] for s in steps]),
                        np.stack([s[2] for s in steps]), term, trunc)
        episode = np.repeat(np.arange(len(self._done)), [len(ep) for ep, _ in self._done])
        return EpisodeSet(t, episode, np.array([f for _, f in self._done]),
                          np.array([self.origin] * len(self._done), dtype=str))


def random_rollouts(task: TaskSpec, episodes: int = 8, max_steps: int = 200, seed: int = 0) -> EpisodeSet:
    """``episodes`` episodes of a uniform random policy on ``task``'s env, each cut at ``max_steps``.

    Seeded (``seed + k`` for episode k, and the action space from ``seed``); the fitness of each
    episode is :class:`~rewardsmith.wrappers.TaskWrapper`'s (an episode cut at ``max_steps`` ends as
    truncated there, so a step-counting fitness counts at most ``max_steps``).
    """
    from gymnasium.wrappers import TimeLimit

    from rewardsmith.wrappers import TaskWrapper

    env = TaskWrapper(TimeLimit(task.make_env(), max_episode_steps=max_steps), task)
    recorder = EpisodeRecorder("random")
    try:
        env.action_space.seed(seed)
        for k in range(episodes):
            env.reset(seed=seed + k)
            recorder.start([env])
            for _ in range(max_steps):
                action = env.action_space.sample()
                _, _, term, trunc, info = env.step(action)
                recorder.step([action], [info])
                if term or trunc:
                    recorder.end(0, info["episode_fitness"])
                    break
    finally:
        env.close()
    if recorder.error is not None:
        raise RuntimeError(f"recording random rollouts failed: {recorder.error}")
    out = recorder.episodes()
    if out is None:
        raise RuntimeError(f"no random rollout of task {task.name!r} ended within {max_steps} steps")
    return out


__all__ = ["EpisodeRecorder", "EpisodeSet", "random_rollouts"]
