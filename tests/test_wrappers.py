"""Applying reward sources: per step, per batch (with each env's previous state), over stored transitions."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnvWrapper

from rewardsmith import get_task
from rewardsmith.errors import RewardsmithError
from rewardsmith.program import load_program
from rewardsmith.sources import ProgramSource, RewardSource, Transitions, as_source
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
    with pytest.raises(RewardsmithError, match="TaskWrapper"):
        venv.reset()  # the reset state is read from reset_infos: no TaskWrapper, no state
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
    assert venv.nonfinite > 0
    assert program.nonfinite_count == venv.nonfinite  # the program's running total advances too
    states = np.full((4, task.state_size), np.nan)  # NaN in the observation
    total, comps = relabel(program, states)
    assert np.all(total == 0) and np.all(comps == 0)


def test_program_for_other_task_rejected(hopper_program) -> None:
    task = get_task("halfcheetah-forward")
    with pytest.raises(RewardsmithError, match="is for task"):
        TaskWrapper(task.make_env(), task, program=hopper_program)


# -- the transition protocol -------------------------------------------------------------------
PENDULUM_SPEED = '''
def compute_reward(pole_angle, cart_velocity):
    upright = 1.0 - abs(pole_angle)
    speed = -0.1 * abs(cart_velocity)
    return upright + speed, {"upright": upright, "speed": speed}
'''


class Recorder:
    """A reward source that records every batch it is given; reward = change of the cart position,
    zeroed at a true end (like a potential difference), so it depends on prev_state and terminated."""

    def __init__(self, task) -> None:
        self.task = get_task(task)
        self.batches: list[Transitions] = []

    @property
    def components(self) -> list[str]:
        return ["moved"]

    def compute(self, t: Transitions, out=None):
        self.batches.append(Transitions(t.prev_state.copy(), None if t.action is None else np.array(t.action),
                                        t.state.copy(), t.terminated.copy(), t.truncated.copy()))
        moved = np.where(t.terminated, 0.0, t.state[:, 0] - t.prev_state[:, 0])
        if out is None:
            out = (np.empty(t.n), np.empty((t.n, 1)))
        out[0][:] = moved
        out[1][:, 0] = moved
        return out


def _pendulum_envs(n: int = 2, limit: int = 7):
    task = get_task("inverted-pendulum")
    return task, [lambda: TaskWrapper(task.make_env(max_episode_steps=limit), task) for _ in range(n)]


def _pendulum_actions(steps: int) -> np.ndarray:
    """Env 0 pushes hard (falls: terminated after a few steps); env 1 holds still (truncated at the limit)."""
    actions = np.zeros((steps, 2, 1), dtype=np.float32)
    actions[:, 0, 0] = 3.0
    return actions


@pytest.mark.parametrize("kind", ["direct", "via-info", "subproc"])
def test_prev_state_after_auto_reset_is_the_reset_state(kind: str) -> None:
    """The step after an episode's end starts from the reset state (not the terminal one), in-process
    and across processes; terminated and truncated reach the source apart."""
    task, fns = _pendulum_envs()
    base = SubprocVecEnv(fns, start_method="fork") if kind == "subproc" else DummyVecEnv(fns)
    recorder = Recorder(task)
    venv = RewardVecEnv(_Passthrough(base) if kind == "via-info" else base, recorder)
    assert (venv._direct is not None) == (kind == "direct")
    assert isinstance(recorder, RewardSource)
    venv.seed(0)
    venv.reset()
    reset_states = np.stack([info["reward_state"] for info in base.reset_infos]) if kind != "direct" \
        else np.stack([w.last_state for w in base.envs])
    ends = {"terminated": 0, "truncated": 0}
    for step, actions in enumerate(_pendulum_actions(20)):
        _, rewards, dones, infos = venv.step(actions)
        t = recorder.batches[-1]
        np.testing.assert_array_equal(t.action, actions)
        np.testing.assert_array_equal(t.prev_state, reset_states)  # where the step started
        np.testing.assert_array_equal(t.state, np.stack([info["reward_state"] for info in infos])
                                      if kind != "direct" else np.stack([w.step_state for w in base.envs]))
        np.testing.assert_allclose(rewards, np.where(t.terminated, 0, t.state[:, 0] - t.prev_state[:, 0]), rtol=1e-6)
        assert not np.any(t.terminated & t.truncated)
        np.testing.assert_array_equal(t.terminated | t.truncated, dones)
        for i in np.flatnonzero(dones):
            assert infos[i]["episode_end"] == ("terminated" if t.terminated[i] else "truncated")
            ends[infos[i]["episode_end"]] += 1
        # the next step starts at the reset state for the envs that ended, else where this one ended
        if kind == "direct":
            after = np.stack([w.last_state for w in base.envs])
        else:
            after = t.state.copy()
            for i in np.flatnonzero(dones):
                after[i] = base.reset_infos[i]["reward_state"]
        for i in np.flatnonzero(dones):
            assert not np.array_equal(after[i], t.state[i])  # the reset state differs from the terminal one
        reset_states = after
    assert ends["terminated"] >= 2 and ends["truncated"] >= 2  # env 0 falls, env 1 hits the 7-step limit
    assert recorder.batches[6].truncated[1] and not recorder.batches[6].terminated[1]
    venv.close()


def test_relabel_of_stored_transitions_equals_the_wrappers_rewards() -> None:
    """Transitions kept from a live run and relabelled later give the rewards the wrapper gave,
    for a program and for a source that reads prev_state and terminated."""
    task, fns = _pendulum_envs()
    program = load_program(PENDULUM_SPEED, task, run_probe=False)
    for reward in (program, Recorder(task)):
        venv = RewardVecEnv(DummyVecEnv(fns), reward)
        venv.seed(1)
        venv.reset()
        kept, given, comps = [], [], []
        rng = np.random.default_rng(1)
        for actions in _pendulum_actions(25) + rng.normal(0, 0.3, size=(25, 2, 1)).astype(np.float32):
            _, rewards, _, _ = venv.step(actions)
            t = venv.last_transitions
            kept.append(Transitions(t.prev_state.copy(), t.action.copy(), t.state.copy(), t.terminated.copy(),
                                    t.truncated.copy()))
            given.append(rewards)
            comps.append(venv.last_components.copy())
        stored = Transitions(*(np.concatenate([getattr(k, f) for k in kept]) for f in
                               ("prev_state", "action", "state", "terminated", "truncated")))
        assert stored.terminated.any() and stored.truncated.any()
        total, components = relabel(reward, stored)
        np.testing.assert_allclose(total, np.concatenate(given), rtol=1e-6)
        np.testing.assert_allclose(components, np.concatenate(comps))
        venv.close()


def test_relabel_states_with_and_without_prev(hopper_program) -> None:
    """States alone suit a state-only program; prev_states and terminated complete the transition."""
    task = get_task("inverted-pendulum")
    rng = np.random.default_rng(2)
    prev, states = rng.normal(size=(2, 50, task.state_size))
    term = rng.random(50) < 0.2
    total, _ = relabel(Recorder(task), states, prev_states=prev, terminated=term)
    np.testing.assert_allclose(total, np.where(term, 0.0, states[:, 0] - prev[:, 0]))
    total, _ = relabel(Recorder(task), split_state(task, states), prev_states=split_state(task, prev))
    np.testing.assert_allclose(total, states[:, 0] - prev[:, 0])
    with pytest.raises(ValueError, match="prev_state"):
        relabel(Recorder(task), states, prev_states=prev[:10])


def test_task_wrapper_applies_a_source_to_its_own_transitions() -> None:
    task = get_task("inverted-pendulum")
    recorder = Recorder(task)
    env = TaskWrapper(task.make_env(max_episode_steps=5), task, program=recorder)
    env.reset(seed=0)
    before = env.last_state
    for _ in range(5):
        _, reward, term, trunc, _ = env.step(np.array([0.5]))
        t = recorder.batches[-1]
        np.testing.assert_array_equal(t.prev_state[0], before)
        assert reward == pytest.approx(0.0 if term else env.step_state[0] - before[0])
        assert bool(t.truncated[0]) == (trunc and not term)
        before = env.last_state
    assert recorder.batches[-1].truncated[0]


def test_program_counts_per_source_not_per_program() -> None:
    """Two sources over one program object each count only their own replaced values."""
    program = load_program(NAN_WHEN_FAST, "hopper-forward", run_probe=False)
    task = program.task
    bad = np.zeros((6, task.state_size))
    bad[:, task.slices()["x_velocity"]] = -1.0  # log of a negative number
    first, second = ProgramSource(program), as_source(program)
    first.compute(Transitions.from_states(bad))
    second.compute(Transitions.from_states(bad[:2]))
    assert (first.nonfinite, second.nonfinite) == (6, 2)
    assert program.nonfinite_count == 8
    assert as_source(first) is first
    with pytest.raises(TypeError, match="reward source"):
        as_source("def compute_reward(): ...")
