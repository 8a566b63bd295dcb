"""Rollouts of a policy on a task, kept whole, and cut into segments for queries.

A :class:`Rollout` keeps, per step, the task's flat reward state after the step (what a reward
program and a :class:`~rewardsmith.preference.model.LearnedReward` read), the action, the env's
own (true) reward, and optionally a simulator snapshot (for a human teacher's GIFs), plus the
episode's true fitness as :class:`~rewardsmith.wrappers.TaskWrapper` measures it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardsmith.preference.segments import Segment, sample_segments
from rewardsmith.tasks import TaskSpec

Policy = Callable[[Any], Any]


@dataclass
class Rollout:
    """One episode: ``states (T, S)``, ``actions (T, A)``, ``rewards (T,)`` true, ``snapshots (T, K)`` or None."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    fitness: float
    snapshots: np.ndarray | None = None
    origin: str = ""

    def __len__(self) -> int:
        return len(self.states)


def trainer_policy(trainer: Any, deterministic: bool = False) -> Policy:
    """The trainer's current policy on raw observations (its observation normalisation applied, frozen)."""
    from rewardsmith.trainer import _find_normalize

    norm = _find_normalize(trainer.venv)

    def act(obs: Any) -> Any:
        o = obs if norm is None else norm.normalize_obs(np.asarray(obs)[None])[0]
        action, _ = trainer.model.predict(o, deterministic=deterministic)
        return action

    return act


def collect(task: TaskSpec, policy: Policy | None, episodes: int, seed: int, *, max_steps: int | None = None,
            snapshots: bool = False, origin: str = "") -> list[Rollout]:
    """``episodes`` episodes of ``policy`` (None: uniform random actions) on ``task``'s env.

    Seeded: episode ``k`` resets with ``seed + k``. ``max_steps`` cuts long episodes.
    """
    from rewardsmith.preference.render import snapshot
    from rewardsmith.wrappers import TaskWrapper

    env = TaskWrapper(task.make_env(), task)
    out: list[Rollout] = []
    try:
        env.action_space.seed(seed)
        for k in range(int(episodes)):
            obs, _ = env.reset(seed=seed + k)
            states, actions, rewards, snaps = [], [], [], []
            fitness = float("nan")
            t = 0
            while True:
                action = env.action_space.sample() if policy is None else policy(obs)
                obs, _, term, trunc, info = env.step(action)
                t += 1
                states.append(np.array(info["reward_state"], dtype=np.float64))
                actions.append(np.asarray(action, dtype=np.float64).reshape(-1))
                rewards.append(float(info["env_reward"]))
                if snapshots:
                    snaps.append(snapshot(env))
                if term or trunc or (max_steps is not None and t >= max_steps):
                    fitness = float(info.get("episode_fitness", np.nan))
                    break
            out.append(Rollout(np.stack(states), np.stack(actions), np.array(rewards), fitness,
                               np.stack(snaps) if snapshots else None, origin))
    finally:
        env.close()
    return out


def segment_length(rollouts: Sequence[Rollout], wanted: int) -> int:
    """``wanted``, or the longest length every rollout can give when some are shorter."""
    if not rollouts:
        raise ValueError("no rollouts to cut segments from")
    return max(1, min(int(wanted), min(len(r) for r in rollouts)))


def cut_segments(rollouts: Sequence[Rollout], length: int, per_rollout: int,
                 rng: np.random.Generator) -> list[Segment]:
    """``per_rollout`` segments of ``length`` steps from every rollout at least that long (copies)."""
    segs: list[Segment] = []
    for r in rollouts:
        if len(r) < length:
            continue
        segs += sample_segments(r.states, length, per_rollout, rng, actions=r.actions, rewards=r.rewards,
                                fitness=r.fitness, snapshots=r.snapshots, origin=r.origin)
    return segs


__all__ = ["Rollout", "collect", "cut_segments", "segment_length", "trainer_policy"]
