"""The ``pendulum`` task (Pendulum-v1): its variables read the pendulum, its fitness is the env's return."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardsmith import get_task
from rewardsmith.program import sparse_program
from rewardsmith.state import join_state, split_state
from rewardsmith.wrappers import TaskWrapper


def _rollout(env: TaskWrapper, policy, seed: int) -> tuple[float, dict, list[dict]]:
    obs, info = env.reset(seed=seed)
    total, steps, done = 0.0, [], False
    while not done:
        action = policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        steps.append({"obs": obs, "action": action, "info": info, "state": env.unwrapped.state.copy()})
        done = terminated or truncated
    return total, info, steps


def test_fitness_is_the_return_of_the_envs_reward() -> None:
    """Over random rollouts and a bang-bang one that spins at the 8 rad/s cap, the episode
    fitness equals the sum of the env's own rewards, and success is fitness >= -200."""
    task = get_task("pendulum")
    env = TaskWrapper(task.make_env(), task)
    env.action_space.seed(0)
    spin = lambda obs: np.array([2.0 if obs[2] >= 0 else -2.0], dtype=np.float32)  # noqa: E731
    for seed, policy in [(0, lambda obs: env.action_space.sample()), (1, lambda obs: env.action_space.sample()),
                         (2, spin)]:
        total, info, steps = _rollout(env, policy, seed)
        assert info["episode_steps"] == 200 and info["episode_end"] == "truncated"
        assert info["episode_fitness"] == pytest.approx(total, rel=1e-12, abs=1e-9)
        assert info["episode_success"] == (total >= -200.0)
        assert -16.3 * 200 <= total < 0
    assert max(abs(s["obs"][2]) for s in steps) == pytest.approx(8.0)  # the spin hit the velocity cap
    env.close()


def test_variables_read_angle_velocity_and_torque() -> None:
    task = get_task("pendulum")
    assert task.variable_names == ["angle", "angular_velocity", "action"]
    env = TaskWrapper(task.make_env(), task)
    env.action_space.seed(3)
    _, _, steps = _rollout(env, lambda obs: env.action_space.sample(), seed=3)
    for s in steps[:50]:
        parts = split_state(task, s["info"]["reward_state"][None])
        th, thdot = s["state"]  # the simulator's own state after the step
        wrapped = (th + math.pi) % (2 * math.pi) - math.pi
        assert -math.pi <= parts["angle"][0] <= math.pi
        assert parts["angle"][0] == pytest.approx(wrapped, abs=1e-5) or abs(abs(wrapped) - math.pi) < 1e-5
        assert parts["angular_velocity"][0] == pytest.approx(thdot, abs=1e-5)
        np.testing.assert_allclose(parts["action"][0], s["action"], rtol=1e-6)
    env.close()


def test_upright_reads_zero_and_hanging_reads_pi() -> None:
    task = get_task("pendulum")
    env = TaskWrapper(task.make_env(), task)
    env.reset(seed=0)
    for th, expected in [(0.0, 0.0), (math.pi / 2, math.pi / 2), (-math.pi / 2, -math.pi / 2), (math.pi, math.pi)]:
        env.unwrapped.state = np.array([th, 0.0])
        _, _, _, _, info = env.step(np.zeros(1, dtype=np.float32))  # one step of 0.05 s barely moves it
        angle = split_state(task, info["reward_state"][None])["angle"][0]
        assert abs(angle) == pytest.approx(abs(expected), abs=0.05)
    env.close()


def test_sparse_reward_pays_only_near_upright_and_settings_are_zoos() -> None:
    task = get_task("pendulum")
    sparse = sparse_program(task)
    states = join_state(task, {"angle": np.array([0.0, 0.29, -0.29, 0.31, math.pi]),
                               "angular_velocity": np.zeros(5), "action": np.zeros((5, 1))})
    np.testing.assert_array_equal(sparse.batch(states)[0], [1.0, 1.0, 1.0, 0.0, 0.0])
    assert task.fitness.threshold == -200.0 and task.default_steps == 100_000 and task.default_algo == "ppo"
    ppo = task.algo_kwargs["ppo"]
    assert ppo["gamma"] == 0.9 and ppo["use_sde"] and ppo["n_steps"] * 8 == 4 * 1024  # zoo: 4 envs x 1024
    assert task.algo_kwargs["sac"] == {"learning_rate": 1e-3}
