"""Applying reward programs: a per-step gymnasium wrapper, a batched SB3 VecEnv wrapper, relabelling.

:class:`TaskWrapper` sits on one env: it reads the task's reward-state variables after every step
into ``info["reward_state"]``, keeps the env's own reward in ``info["env_reward"]``, measures the
task's fitness and, at the end of an episode, adds ``info["episode_fitness"]``,
``info["episode_success"]`` and ``info["episode_end"]`` (``"terminated"`` or ``"truncated"``).
Given a program it also replaces the reward, step by step.

:class:`RewardVecEnv` sits on a VecEnv of TaskWrappers and replaces the reward of all envs with
one compiled call per step; :func:`relabel` does the same over stored arrays.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from rewardsmith.errors import RewardsmithError
from rewardsmith.state import StateReader, join_state, make_fitness_reader
from rewardsmith.tasks import TaskSpec, get_task


class TaskWrapper(gym.Wrapper):
    """Reads reward-state variables, measures fitness, and optionally replaces the reward.

    Args:
        env: a gymnasium env of the task (e.g. ``task.make_env()``).
        task: the task (or its name).
        program: a :class:`~rewardsmith.program.RewardProgram` for this task; None keeps the env's reward.
        state_in_info: put the reward state in ``info["reward_state"]`` (needed when a
            :class:`RewardVecEnv` cannot reach this wrapper directly, e.g. across processes).

    Attributes:
        last_state: the reward state after the latest reset or step, ``(task.state_size,)``.
        step_state: the reward state after the latest step (a reset does not overwrite it, so
            it still holds the terminal state when a VecEnv has auto-reset the env).
    """

    def __init__(self, env: gym.Env, task: str | TaskSpec, program: Any = None, state_in_info: bool = True) -> None:
        super().__init__(env)
        self.state_in_info = state_in_info
        self.task = get_task(task)
        if program is not None and program.task.name != self.task.name:
            raise RewardsmithError(f"program is for task {program.task.name!r}, env is for {self.task.name!r}")
        self.program = program
        self._reader = StateReader(self.task, env)
        self._fitness = make_fitness_reader(self.task, env)
        self._reduce = self.task.fitness.reduce
        self._zero_action = np.zeros(env.action_space.shape, dtype=np.float64) \
            if isinstance(env.action_space, gym.spaces.Box) else 0
        self.last_state = self.step_state = np.zeros(self.task.state_size)
        self._acc = 0.0
        self._start = 0.0
        self._steps = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self.last_state = self._reader.read(obs, info, self._zero_action)
        if self.state_in_info:
            info["reward_state"] = self.last_state
        self._steps = 0
        self._acc = {"max": -np.inf, "min": np.inf}.get(self._reduce, 0.0)
        if self._reduce == "delta":
            self._start = self._fitness(obs, info, self._zero_action)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        state = self.last_state = self.step_state = self._reader.read(obs, info, action)
        if self.state_in_info:
            info["reward_state"] = state
        info["env_reward"] = reward
        self._steps += 1
        reduce = self._reduce
        if reduce in ("sum", "mean"):
            self._acc += self._fitness(obs, info, action)
        elif reduce == "max":
            self._acc = max(self._acc, self._fitness(obs, info, action))
        elif reduce == "min":
            self._acc = min(self._acc, self._fitness(obs, info, action))
        if terminated or truncated:
            self._episode_end(obs, info, action, terminated)
        if self.program is not None:
            total, comps = self.program.batch(state[None, :])
            reward = float(total[0])
            info["reward_components"] = dict(zip(self.program.components, comps[0].tolist()))
        return obs, reward, terminated, truncated, info

    def _episode_end(self, obs: Any, info: dict, action: Any, terminated: bool) -> None:
        reduce = self._reduce
        if reduce == "length":
            value = float(self._steps)
        elif reduce == "final":
            value = self._fitness(obs, info, action)
        elif reduce == "delta":
            value = self._fitness(obs, info, action) - self._start
        elif reduce == "mean":
            value = self._acc / max(self._steps, 1)
        else:
            value = float(self._acc)
        threshold = self.task.fitness.threshold
        info["episode_fitness"] = value
        info["episode_success"] = None if threshold is None else bool(value >= threshold)
        info["episode_end"] = "terminated" if terminated else "truncated"
        info["episode_steps"] = self._steps


class RewardVecEnv(VecEnvWrapper):
    """Replaces the reward of a VecEnv of :class:`TaskWrapper` envs with one compiled call per step.

    The env's own reward goes to ``info["env_reward"]``; the program's components, as an
    ``(n_envs, C)`` array, to :attr:`last_components` (and with ``components_in_info=True`` also
    to ``info["reward_components"]`` as a dict). Non-finite totals are replaced by 0 and counted in
    ``program.nonfinite_count``. In a ``DummyVecEnv`` the states are read straight from each
    :class:`TaskWrapper`; otherwise from ``info["reward_state"]``.
    """

    def __init__(self, venv: VecEnv, program: Any, components_in_info: bool = False) -> None:
        super().__init__(venv)
        self.program = program
        self.components_in_info = components_in_info
        self._direct: list[TaskWrapper] | None = None
        if isinstance(venv, DummyVecEnv):
            wrappers = [_find_task_wrapper(env) for env in venv.envs]
            if all(w is not None for w in wrappers):
                self._direct = wrappers  # type: ignore[assignment]
                for w in self._direct:
                    w.state_in_info = False
        n, size = venv.num_envs, program.task.state_size
        self._states = np.zeros((n, size))
        self.last_total = np.zeros(n)
        self.last_components = np.zeros((n, len(program.components)))
        self._names = list(program.components)

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, _env_rewards, dones, infos = self.venv.step_wait()
        states = self._states
        if self._direct is not None:
            for i, wrapper in enumerate(self._direct):
                states[i] = wrapper.step_state
        else:
            for i, info in enumerate(infos):
                try:
                    states[i] = info["reward_state"]
                except KeyError:
                    raise RewardsmithError("RewardVecEnv needs every env wrapped in rewardsmith.TaskWrapper "
                                           "(info has no 'reward_state')") from None
        self.program.batch(states, (self.last_total, self.last_components))
        if self.components_in_info:
            names = self._names
            for i, info in enumerate(infos):
                info["reward_components"] = dict(zip(names, self.last_components[i].tolist()))
        return obs, self.last_total.astype(np.float32), dones, infos


def _find_task_wrapper(env: gym.Env) -> TaskWrapper | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, TaskWrapper):
            return env
        env = env.env
    return None


def relabel(program: Any, states: np.ndarray | dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate ``program`` over stored states.

    Args:
        program: a :class:`~rewardsmith.program.RewardProgram`.
        states: ``(N, state_size)`` flat states (as in ``info["reward_state"]``) or a dict of
            per-variable arrays ``{name: (N, *shape)}``.

    Returns:
        ``(rewards (N,), components (N, C))`` with non-finite values replaced by 0.
    """
    if isinstance(states, dict):
        states = join_state(program.task, states)
    return program.batch(states)
