"""SB3 callbacks: log reward components and the task's fitness during training; periodic evaluation.

:class:`FitnessLogger` records the training-time figures (reward components, the env's own
reward, episode fitness, lengths, termination causes) into a curve; :class:`PeriodicEval`
evaluates the deterministic policy every N steps and writes its figures into the same curve.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rewardsmith.tasks import TaskSpec


def find_wrapper(venv: Any, cls: type) -> Any:
    """The first VecEnv wrapper of type ``cls`` in ``venv``'s chain, or None."""
    while venv is not None:
        if isinstance(venv, cls):
            return venv
        venv = getattr(venv, "venv", None)
    return None


class FitnessLogger(BaseCallback):
    """Records, every ``interval`` env steps, the mean of each reward component, the env's own
    reward, the fitness and length of the episodes that ended, and their termination causes.

    Writes them to the SB3 logger (TensorBoard: ``reward/<component>``, ``fitness/mean``, ...)
    and keeps them in :attr:`curve` for analysis. The component names and the non-finite count
    come from the :class:`~rewardsmith.wrappers.RewardVecEnv` in the training env (``program``
    is only a fallback for the names). The logger can be reused across ``learn`` calls: the curve
    goes on.
    """

    def __init__(self, task: TaskSpec, program: Any = None, interval: int = 2048, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.task = task
        self.program = program
        self.interval = interval
        self.curve: list[dict[str, Any]] = []
        self._reward_env: Any = None
        self._reset_window()
        self._last_flush = 0

    def _reset_window(self) -> None:
        self._comp_sum: np.ndarray | None = None
        self._comp_max: np.ndarray | None = None
        self._comp_min: np.ndarray | None = None
        self._comp_abs: np.ndarray | None = None
        self._sat = 0.0
        self._sat_n = 0
        self._env_reward = 0.0
        self._total = 0.0
        self._n = 0
        self._fitness: list[float] = []
        self._lengths: list[int] = []
        self._ends: Counter[str] = Counter()
        self._success: list[bool] = []

    def _on_training_start(self) -> None:
        import gymnasium as gym

        from rewardsmith.wrappers import RewardVecEnv

        self._reward_env = find_wrapper(self.training_env, RewardVecEnv)
        if self._reward_env is not None:
            self._names = list(self._reward_env.source.components)
        else:
            self._names = list(self.program.components) if self.program is not None else []
        space = self.training_env.action_space
        self._high = None
        if isinstance(space, gym.spaces.Box) and np.all(np.isfinite(space.high)):
            self._high = 0.98 * np.abs(space.high)

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", ())
        for info in infos:
            self._env_reward += float(info.get("env_reward", 0.0))
            if "episode_fitness" in info:
                self._fitness.append(float(info["episode_fitness"]))
                self._lengths.append(int(info.get("episode_steps", 0)))
                self._ends[info.get("episode_end", "?")] += 1
                if info.get("episode_success") is not None:
                    self._success.append(bool(info["episode_success"]))
        self._n += len(infos)
        actions = self.locals.get("clipped_actions", self.locals.get("actions"))
        if self._high is not None and actions is not None:
            self._sat += float(np.mean(np.abs(actions) >= self._high))
            self._sat_n += 1
        if self._reward_env is not None:
            self._total += float(self._reward_env.last_total.sum())
            comps = self._reward_env.last_components
            if self._comp_sum is None:
                self._comp_sum = comps.sum(axis=0)
                self._comp_abs = np.abs(comps).sum(axis=0)
                self._comp_max, self._comp_min = comps.max(axis=0), comps.min(axis=0)
            else:
                self._comp_sum += comps.sum(axis=0)
                self._comp_abs += np.abs(comps).sum(axis=0)
                np.maximum(self._comp_max, comps.max(axis=0), out=self._comp_max)
                np.minimum(self._comp_min, comps.min(axis=0), out=self._comp_min)
        if self.num_timesteps - self._last_flush >= self.interval:
            self._flush()
        return True

    def _on_training_end(self) -> None:
        if self._n:
            self._flush()
            self.logger.dump(self.num_timesteps)

    def _flush(self) -> None:
        self._last_flush = self.num_timesteps
        n = max(self._n, 1)
        point: dict[str, Any] = {"step": int(self.num_timesteps), "env_reward_mean": self._env_reward / n,
                                 "components": {}, "components_abs": {}, "components_max": {},
                                 "components_min": {},
                                 "action_saturation": self._sat / self._sat_n if self._sat_n else None}
        self.logger.record("reward/env_reward", point["env_reward_mean"])
        if self._comp_sum is not None and self._reward_env is not None:
            point["reward_mean"] = self._total / n  # the reward source's total per step, before normalisation
            self.logger.record("reward/total", point["reward_mean"])
            for j, name in enumerate(self._names):
                point["components"][name] = float(self._comp_sum[j] / n)
                point["components_abs"][name] = float(self._comp_abs[j] / n)  # type: ignore[index]
                point["components_max"][name] = float(self._comp_max[j])  # type: ignore[index]
                point["components_min"][name] = float(self._comp_min[j])  # type: ignore[index]
                self.logger.record(f"reward/{name}", point["components"][name])
            self.logger.record("reward/nonfinite", self._reward_env.nonfinite)
        point["episodes"] = len(self._fitness)
        point["fitness_mean"] = float(np.mean(self._fitness)) if self._fitness else None
        point["episode_length_mean"] = float(np.mean(self._lengths)) if self._lengths else None
        point["terminations"] = dict(self._ends)
        point["success_rate"] = float(np.mean(self._success)) if self._success else None
        if self._fitness:
            self.logger.record("fitness/mean", point["fitness_mean"])
            self.logger.record("fitness/episode_length", point["episode_length_mean"])
            if point["success_rate"] is not None:
                self.logger.record("fitness/success_rate", point["success_rate"])
        self.curve.append(point)
        self._reset_window()

    def record_eval(self, figures: dict[str, Any]) -> None:
        """Put evaluation figures into the curve point of the current step (flushing the window now)."""
        if self._n or not self.curve or self.curve[-1]["step"] != self.num_timesteps:
            self._flush()
        self.curve[-1].update(figures)


class PeriodicEval(BaseCallback):
    """Evaluates the deterministic policy every ``every`` env steps over ``episodes`` episodes.

    Uses :func:`rewardsmith.train.evaluate` (the training run's frozen observation normalisation,
    the task's true fitness, the same ``seed`` each time so the points compare). Each evaluation is
    kept in :attr:`evals`, logged (``eval/fitness_mean``, ``eval/success_rate``) and, given a
    :class:`FitnessLogger`, added to its curve point at that step as ``eval_fitness_mean``,
    ``eval_fitness_std``, ``eval_success_rate`` and ``eval_episodes``.
    """

    def __init__(self, task: TaskSpec, every: int, episodes: int = 5, seed: int = 10_000,
                 fitness_logger: FitnessLogger | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        if every < 1 or episodes < 1:
            raise ValueError(f"every and episodes must be positive, got {every} and {episodes}")
        self.task, self.every, self.episodes, self.seed = task, int(every), int(episodes), int(seed)
        self.fitness_logger = fitness_logger
        self.evals: list[dict[str, Any]] = []
        self._next = self.every

    def _on_training_start(self) -> None:
        if self._next <= self.num_timesteps:  # continuing from a checkpoint
            self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            while self._next <= self.num_timesteps:
                self._next += self.every
            self.run()
        return True

    def run(self) -> dict[str, Any]:
        """Evaluate now; returns (and records) the figures."""
        from rewardsmith.train import evaluate

        episodes = evaluate(self.model, self.task, self.training_env, self.episodes, self.seed)
        threshold = self.task.fitness.threshold
        figures: dict[str, Any] = {
            "eval_fitness_mean": float(np.mean(episodes)), "eval_fitness_std": float(np.std(episodes)),
            "eval_success_rate": None if threshold is None else float(np.mean([e >= threshold for e in episodes])),
            "eval_episodes": len(episodes)}
        self.evals.append({"step": int(self.num_timesteps), **figures})
        self.logger.record("eval/fitness_mean", figures["eval_fitness_mean"])
        if figures["eval_success_rate"] is not None:
            self.logger.record("eval/success_rate", figures["eval_success_rate"])
        if self.fitness_logger is not None:
            self.fitness_logger.record_eval(figures)
        return figures
