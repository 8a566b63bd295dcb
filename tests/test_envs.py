"""rewardsmith's own envs and every built-in task's env pass gymnasium's env checker."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rewardsmith
from rewardsmith.tasks import get_task, list_tasks
from rewardsmith.wrappers import TaskWrapper

BUILTIN = [t.name for t in list_tasks()]


@pytest.mark.parametrize("name", BUILTIN, ids=BUILTIN)
def test_check_env(name):
    env = get_task(name).make_env()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # infinite Box bounds etc.: gymnasium's own envs warn too
            check_env(env.unwrapped, skip_render_check=True)  # no display in CI
    finally:
        env.close()


def test_point_goal_made_by_module_qualified_id_in_a_fresh_process():
    """gymnasium imports rewardsmith.envs itself: no import of rewardsmith needed first (spawned workers)."""
    import subprocess
    import sys

    assert get_task("point-goal").env_id == "rewardsmith.envs:rewardsmith/PointGoal-v0"
    code = ("import gymnasium as gym; env = gym.make('rewardsmith.envs:rewardsmith/PointGoal-v0'); "
            "env.reset(seed=0); print(env.spec.max_episode_steps)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "100"


def test_point_goal_registered_by_string():
    rewardsmith.register_envs()
    spec = gym.spec("rewardsmith/PointGoal-v0")
    assert spec.entry_point == "rewardsmith.envs.point_goal:PointGoalEnv"
    assert spec.max_episode_steps == 100


def test_point_goal_dynamics_reward_and_fitness():
    task = get_task("point-goal")
    env = TaskWrapper(task.make_env(), task)
    obs, info = env.reset(seed=3)
    state = info["reward_state"]
    np.testing.assert_allclose(state[:2], obs[:2])  # position from data.body("point")
    np.testing.assert_allclose(state[4:6], obs[4:6])  # goal from the mocap body
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        pos, vel, goal = env.last_state[:2], env.last_state[2:4], env.last_state[4:6]
        action = np.clip(5.0 * (goal - pos) - 2.0 * vel, -1.0, 1.0)  # a PD controller reaches the goal
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward == pytest.approx(info["reward_dist"] + info["reward_ctrl"])
        steps += 1
    assert (steps, terminated) == (100, False)
    assert info["episode_fitness"] == pytest.approx(-info["distance"])
    assert info["episode_success"] is True
    env.close()
