"""Applying reward programs: per step, per batch, and over stored states."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper

from rewardsmith import get_task
from rewardsmith.errors import RewardsmithError
from rewardsmith.program import load_program
from rewardsmith.state import split_state
from rewardsmith.wrappers import RewardVecEnv, TaskWrapper, relabel

HOPPER = '''
def compute_reward(x_velocity, torso_height, torso_angle, action):
    forward = 1.0 * x_velocity
    healthy = 1.0 if torso_height > 0.8 and abs(torso_angle) < 0.2 else 0.0
    ctrl = 0.001 * np.sum(action * action)
    return forward + healthy - ctrl, {"forward": forward, "healthy": healthy, "ctrl": -ctrl}
'''
NAN_WHEN_FAST = '''
def compute_reward(x_velocity):
    r = np.log(x_velocity)
    return r, {"logv": r}
'''


@pytest.fixture(scope="module")
def hopper_program():
    return load_program(HOPPER, "hopper-forward", run_probe=False)


class _Passthrough(VecEnvWrapper):
    """Hides the DummyVecEnv so RewardVecEnv must read states from info."""

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        return self.venv.step_wait()


def test_gym_wrapper_replaces_reward_and_keeps_env_reward(hopper_program) -> None:
    task = hopper_program.task
    env = TaskWrapper(task.make_env(), task, program=hopper_program)
    env.reset(seed=0)
    for _ in range(20):
        _, reward, term, trunc, info = env.step(env.action_space.sample())
        comps = info["reward_components"]
        assert reward == pytest.approx(sum(comps.values()))
        parts = split_state(task, info["reward_state"][None])
        assert comps["forward"] == pytest.approx(parts["x_velocity"][0])
        assert "env_reward" in info and info["env_reward"] != reward
        if term or trunc:
            break


def test_fitness_delta_matches_distance() -> None:
    task = get_task("hopper-forward")
    env = TaskWrapper(task.make_env(), task)
    env.reset(seed=0)
    x0 = env.unwrapped.data.qpos[0]
    info = {}
    for _ in range(1000):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            break
    assert info["episode_fitness"] == pytest.approx(env.unwrapped.data.qpos[0] - x0)
    assert info["episode_end"] in ("terminated", "truncated")
    assert info["episode_success"] is None


def test_fitness_length_and_success() -> None:
    task = get_task("inverted-pendulum")
    env = TaskWrapper(task.make_env(), task)
    env.reset(seed=0)
    for steps in range(1, 1001):
        _, _, term, trunc, info = env.step(np.array([3.0]))  # push hard: falls quickly
        if term or trunc:
            break
    assert info["episode_fitness"] == steps
    assert info["episode_steps"] == steps
    assert info["episode_success"] is False
    assert info["episode_end"] == "terminated"


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "via-info"])
def test_vec_wrapper_matches_relabel(hopper_program, direct: bool) -> None:
    task = hopper_program.task
    base = DummyVecEnv([lambda: TaskWrapper(task.make_env(), task) for _ in range(3)])
    venv = RewardVecEnv(base if direct else _Passthrough(base), hopper_program, components_in_info=True)
    assert (venv._direct is not None) == direct
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = rng.uniform(-1, 1, size=(3, 3)).astype(np.float32)
        _, rewards, _, infos = venv.step(actions)
        states = np.stack([w.step_state for w in (base.envs[i] for i in range(3))])
        expected, comps = relabel(hopper_program, states)
        np.testing.assert_allclose(rewards, expected, rtol=1e-6)
        np.testing.assert_allclose(venv.last_components, comps)
        assert set(infos[0]["reward_components"]) == {"forward", "healthy", "ctrl"}
        assert all("env_reward" in info for info in infos)
        for i, info in enumerate(infos):  # on an auto-reset the reward used the terminal state
            if "terminal_observation" in info:
                assert not np.array_equal(base.envs[i].step_state, base.envs[i].last_state)


def test_vec_wrapper_needs_task_wrapper(hopper_program) -> None:
    venv = RewardVecEnv(_Passthrough(DummyVecEnv([hopper_program.task.make_env])), hopper_program)
    venv.reset()
    with pytest.raises(RewardsmithError, match="TaskWrapper"):
        venv.step(np.zeros((1, 3), dtype=np.float32))


def test_relabel_dict_equals_flat(hopper_program) -> None:
    task = hopper_program.task
    states = np.random.default_rng(1).normal(size=(100, task.state_size))
    flat = relabel(hopper_program, states)
    by_name = relabel(hopper_program, split_state(task, states))
    np.testing.assert_array_equal(flat[0], by_name[0])
    ref = hopper_program.python()
    parts = split_state(task, states)
    for i in range(0, 100, 17):
        total, comps = ref(*(parts[p][i] for p in hopper_program.params))
        assert flat[0][i] == pytest.approx(total)
        assert flat[1][i, 0] == pytest.approx(comps["forward"])


def test_runtime_guard_replaces_nonfinite() -> None:
    """log of a negative velocity is NaN: the guard turns it into 0 and counts it, nothing crashes."""
    program = load_program(NAN_WHEN_FAST, "hopper-forward", run_probe=False)
    task = program.task
    venv = RewardVecEnv(DummyVecEnv([lambda: TaskWrapper(task.make_env(), task) for _ in range(2)]), program)
    venv.seed(0)
    venv.reset()
    for _ in range(50):
        _, rewards, _, _ = venv.step(np.random.uniform(-1, 1, size=(2, 3)).astype(np.float32))
        assert np.all(np.isfinite(rewards))
    assert program.nonfinite_count > 0
    states = np.full((4, task.state_size), np.nan)  # NaN in the observation
    total, comps = relabel(program, states)
    assert np.all(total == 0) and np.all(comps == 0)


def test_program_for_other_task_rejected(hopper_program) -> None:
    task = get_task("halfcheetah-forward")
    with pytest.raises(RewardsmithError, match="is for task"):
        TaskWrapper(task.make_env(), task, program=hopper_program)
