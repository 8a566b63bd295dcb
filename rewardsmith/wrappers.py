"""Applying reward sources: a per-step gymnasium wrapper, a batched SB3 VecEnv wrapper, relabelling.

:class:`TaskWrapper` sits on one env: it reads the task's reward-state variables after every step
into ``info["reward_state"]``, keeps the env's own reward in ``info["env_reward"]``, measures the
task's fitness and, at the end of an episode, adds ``info["episode_fitness"]``,
``info["episode_success"]`` and ``info["episode_end"]`` (``"terminated"`` or ``"truncated"``).
Given a reward program or source it also replaces the reward, step by step.

:class:`RewardVecEnv` sits on a VecEnv of TaskWrappers, keeps each env's previous reward state and
replaces the reward of all envs with one call of a :class:`~rewardsmith.sources.RewardSource` per
step; :func:`relabel` applies the same source to stored transitions.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from rewardsmith.errors import RewardsmithError
from rewardsmith.sources import RewardSource, Transitions, as_source, source_nonfinite
from rewardsmith.state import StateReader, join_state, make_fitness_reader
from rewardsmith.tasks import TaskSpec, get_task


class TaskWrapper(gym.Wrapper):
    """Reads reward-state variables, measures fitness, and optionally replaces the reward.

    Args:
        env: a gymnasium env of the task (e.g. ``task.make_env()``).
        task: the task (or its name).
        program: a :class:`~rewardsmith.program.RewardProgram` or any
            :class:`~rewardsmith.sources.RewardSource` for this task; None keeps the env's reward.
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
        self.source: RewardSource | None = None if program is None else as_source(program)
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
        prev = self.last_state
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
        if self.source is not None:
            act = np.asarray(action, dtype=np.float64).reshape(1, -1)
            t = Transitions(prev[None, :], act, state[None, :], np.array([bool(terminated)]),
                            np.array([bool(truncated and not terminated)]))
            total, comps = self.source.compute(t)
            reward = float(total[0])
            info["reward_components"] = dict(zip(self.source.components, comps[0].tolist()))
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
    """Replaces the reward of a VecEnv of :class:`TaskWrapper` envs with one source call per step.

    Args:
        venv: a VecEnv whose envs are wrapped in :class:`TaskWrapper`.
        source: a :class:`~rewardsmith.sources.RewardSource`, or a
            :class:`~rewardsmith.program.RewardProgram` (wrapped by :func:`~rewardsmith.sources.as_source`).
        components_in_info: also put each env's components in ``info["reward_components"]`` (a dict).

    Each step hands the source a :class:`~rewardsmith.sources.Transitions` batch: each env's
    previous reward state (after an auto-reset, the reset state, not the terminal one), the
    actions, the new state (the terminal state at an episode's end), and ``terminated`` apart from
    ``truncated`` (from :class:`TaskWrapper`'s ``info["episode_end"]``, else SB3's
    ``info["TimeLimit.truncated"]``). In a ``DummyVecEnv`` the states are read straight from each
    :class:`TaskWrapper`; otherwise from ``info["reward_state"]`` and, at a reset, from the base
    VecEnv's ``reset_infos[i]["reward_state"]``.

    The env's own reward stays in ``info["env_reward"]``; the source's output is in
    :attr:`last_total` / :attr:`last_components` (``(n_envs, C)``) and the batch in
    :attr:`last_transitions` (all valid until the next step: copy them to keep them).
    :attr:`nonfinite` counts the values the source's runtime guard replaced through this wrapper.
    """

    def __init__(self, venv: VecEnv, source: Any, components_in_info: bool = False) -> None:
        super().__init__(venv)
        self.source: RewardSource = as_source(source)
        self.program = getattr(self.source, "program", None)
        self.components_in_info = components_in_info
        self._direct: list[TaskWrapper] | None = None
        if isinstance(venv, DummyVecEnv):
            wrappers = [_find_task_wrapper(env) for env in venv.envs]
            if all(w is not None for w in wrappers):
                self._direct = wrappers  # type: ignore[assignment]
                for w in self._direct:
                    w.state_in_info = False
        self._base = _base_venv(venv)
        n, size = venv.num_envs, self.source.task.state_size
        # three rotating buffers: this step's previous states, this step's states, a spare for the
        # next step's previous states when an env was reset (else they are this step's states)
        self._prev, self._states, self._spare = (np.zeros((n, size)) for _ in range(3))
        self._actions: np.ndarray | None = None
        self._none = np.zeros(n, dtype=bool)
        self._compute = self.source.compute
        self._names = list(self.source.components)
        self.last_total = np.zeros(n)
        self.last_components = np.zeros((n, len(self._names)))
        self._out = (self.last_total, self.last_components)
        self._t = Transitions(self._prev, None, self._states, self._none, self._none)
        self.last_transitions: Transitions | None = None
        self._nonfinite0 = source_nonfinite(self.source)

    @property
    def nonfinite(self) -> int:
        """Reward values replaced by the source's runtime guard through this wrapper (NaN/inf, raised)."""
        return source_nonfinite(self.source) - self._nonfinite0

    def reset(self) -> Any:
        obs = self.venv.reset()
        self._reset_states(range(self.num_envs), self._prev)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, _env_rewards, dones, infos = self.venv.step_wait()
        prev, states, spare = self._prev, self._states, self._spare
        if self._direct is not None:
            for i, wrapper in enumerate(self._direct):
                states[i] = wrapper.step_state
        else:
            for i, info in enumerate(infos):
                try:
                    states[i] = info["reward_state"]
                except KeyError:
                    raise _no_task_wrapper() from None
        ended = dones.nonzero()[0]
        if len(ended):
            terminated, truncated = np.zeros_like(self._none), np.zeros_like(self._none)
            for i in ended:
                info = infos[i]
                end = info.get("episode_end")
                real = end == "terminated" if end is not None else not info.get("TimeLimit.truncated", False)
                terminated[i], truncated[i] = real, not real
        else:
            terminated = truncated = self._none
        t = self._t  # one batch object, refilled each step (valid until the next step)
        t.prev_state, t.action, t.state, t.terminated, t.truncated = prev, self._actions, states, terminated, truncated
        self._compute(t, self._out)
        self.last_transitions = t
        # the next step starts where this one ended, or at the reset state for the envs that ended
        if len(ended):
            spare[:] = states
            self._reset_states(ended, spare)
            self._prev, self._states, self._spare = spare, prev, states
        else:
            self._prev, self._states = states, prev
        if self.components_in_info:
            names, comps = self._names, self.last_components
            for i, info in enumerate(infos):
                info["reward_components"] = dict(zip(names, comps[i].tolist()))
        return obs, self.last_total.astype(np.float32), dones, infos

    def _reset_states(self, envs: Any, into: np.ndarray) -> None:
        """Copy the reset state of ``envs`` (after a reset or an auto-reset) into rows of ``into``."""
        if self._direct is not None:
            for i in envs:
                into[i] = self._direct[i].last_state
            return
        reset_infos = self._base.reset_infos
        for i in envs:
            try:
                into[i] = reset_infos[i]["reward_state"]
            except (KeyError, IndexError, TypeError):
                raise _no_task_wrapper() from None


def _no_task_wrapper() -> RewardsmithError:
    return RewardsmithError("RewardVecEnv needs every env wrapped in rewardsmith.TaskWrapper "
                            "(info has no 'reward_state')")


def _base_venv(venv: VecEnv) -> VecEnv:
    """The innermost VecEnv (the one that resets the envs and keeps ``reset_infos``)."""
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return venv


def _find_task_wrapper(env: gym.Env) -> TaskWrapper | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, TaskWrapper):
            return env
        env = env.env
    return None


def relabel(source: Any, data: np.ndarray | dict[str, Any] | Transitions,
            prev_states: np.ndarray | dict[str, Any] | None = None, terminated: np.ndarray | None = None,
            truncated: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply a reward source (or program) to stored transitions, as :class:`RewardVecEnv` does live.

    Args:
        source: a :class:`~rewardsmith.sources.RewardSource` or a
            :class:`~rewardsmith.program.RewardProgram`.
        data: a :class:`~rewardsmith.sources.Transitions` batch, or the states after each step:
            ``(N, state_size)`` flat states (as in ``info["reward_state"]``) or a dict of
            per-variable arrays ``{name: (N, *shape)}``.
        prev_states, terminated, truncated: with states as ``data``, the rest of each transition
            (see :meth:`Transitions.from_states` for the defaults: a state-only source needs none).

    Returns:
        ``(rewards (N,), components (N, C))``; a program's non-finite values are replaced by 0.
    """
    src = as_source(source)
    if isinstance(data, Transitions):
        t = data
    else:
        if isinstance(data, dict):
            data = join_state(src.task, data)
        if isinstance(prev_states, dict):
            prev_states = join_state(src.task, prev_states)
        t = Transitions.from_states(data, prev_state=prev_states, terminated=terminated, truncated=truncated)
    return src.compute(t)
