"""rewardsmith/PointMaze-v0 and the point-maze task: walls block, a waypoint controller succeeds."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from rewardsmith.tasks import get_task
from rewardsmith.wrappers import TaskWrapper

ENV_ID = "rewardsmith.envs:rewardsmith/PointMaze-v0"
GOAL = np.array([-0.6, 0.4])


def test_env_checkers():
    env = gym.make(ENV_ID)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(env.unwrapped, skip_render_check=True)
            sb3_check_env(env.unwrapped, warn=False)
    finally:
        env.close()


def test_made_by_module_qualified_id_in_a_fresh_process():
    code = f"import gymnasium as gym; env = gym.make('{ENV_ID}'); env.reset(seed=0); print(env.spec.max_episode_steps)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "400"


def _run(env, controller):
    obs, _ = env.reset(seed=0)
    total, terminated, truncated, info = 0.0, False, False, {}
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(controller(obs))
        total += reward
    return total, terminated, info


def test_walls_block_straight_line():
    env = gym.make(ENV_ID)
    total, terminated, info = _run(env, lambda o: np.clip(5.0 * (GOAL - o[:2]) - 2.0 * o[2:], -1, 1))
    assert (total, terminated) == (0.0, False)
    assert info["distance"] > 0.3  # stuck under the middle wall
    env.close()


def _waypoints():
    points = [np.array([0.6, -0.4]), np.array([0.6, 0.4]), GOAL]
    state = {"i": 0}

    def controller(obs):
        pos, vel = obs[:2], obs[2:4]
        if state["i"] < len(points) - 1 and np.linalg.norm(points[state["i"]] - pos) < 0.1:
            state["i"] += 1
        return np.clip(5.0 * (points[state["i"]] - pos) - 2.0 * vel, -1, 1).astype(np.float32)

    return controller


def test_waypoint_controller_reaches_goal_and_task_says_success():
    task = get_task("point-maze")
    assert task.env_id == ENV_ID and "sparse" in task.tags
    env = TaskWrapper(task.make_env(), task)
    total, terminated, info = _run(env, _waypoints())
    assert (total, terminated) == (1.0, True)
    assert info["episode_end"] == "terminated"
    assert info["episode_fitness"] == pytest.approx(1.0)
    assert info["episode_success"] is True
    env.close()
