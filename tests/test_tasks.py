"""The task registry and reading reward-state variables."""

from __future__ import annotations

import numpy as np
import pytest

from rewardsmith import Fitness, TaskSpec, Variable, get_task, list_tasks, register_task
from rewardsmith.errors import TaskNotFoundError, TaskSpecError
from rewardsmith.state import StateReader, join_state, split_state

ISSUE_TASKS = ["inverted-pendulum", "inverted-double-pendulum", "reacher", "hopper-forward",
               "halfcheetah-forward", "halfcheetah-backward", "swimmer-forward", "pusher"]


def test_builtin_tasks_registered() -> None:
    names = [t.name for t in list_tasks()]
    for name in ISSUE_TASKS:
        assert name in names


def test_unknown_task_suggests() -> None:
    with pytest.raises(TaskNotFoundError, match="Did you mean 'hopper-forward'"):
        get_task("hoper")


@pytest.mark.parametrize("name", ISSUE_TASKS, ids=ISSUE_TASKS)
def test_reader_matches_mujoco_state(name: str) -> None:
    """Every variable reads the right value, with the declared shape, after reset and steps."""
    task = get_task(name)
    env = task.make_env()
    reader = StateReader(task, env)
    obs, info = env.reset(seed=1)
    for _ in range(5):
        action = env.action_space.sample()
        obs, _, _, _, info = env.step(action)
    state = reader.read(obs, info, action).copy()
    assert state.shape == (task.state_size,)
    assert np.all(np.isfinite(state))
    parts = split_state(task, state[None])
    data = env.unwrapped.data
    ns = {"data": data, "model": env.unwrapped.model, "obs": obs, "info": info, "action": action, "np": np}
    for var in task.variables:
        expected = np.asarray(eval(var.source, ns), dtype=float).reshape(var.shape)
        np.testing.assert_allclose(parts[var.name][0], expected, err_msg=var.name)
    # reading again after another step changes the values: views are live, not frozen copies
    env.step(env.action_space.sample())
    again = reader.read(obs, info, action)
    assert not np.array_equal(again, state)
    env.close()


def test_hopper_variables_are_physical() -> None:
    task = get_task("hopper-forward")
    env = task.make_env()
    obs, info = env.reset(seed=0)
    state = StateReader(task, env).read(obs, info, np.zeros(3))
    parts = split_state(task, state[None])
    assert 1.2 < parts["torso_height"][0] < 1.3  # the hopper starts standing at z = 1.25 m
    assert parts["joint_angles"].shape == (1, 3)


def test_split_join_roundtrip() -> None:
    task = get_task("pusher")
    states = np.random.default_rng(0).normal(size=(7, task.state_size))
    again = join_state(task, split_state(task, states))
    np.testing.assert_array_equal(again, states)
    with pytest.raises(TaskSpecError, match="missing variables"):
        join_state(task, {"tip_position": states[:, :3]})


def test_signature_and_dict() -> None:
    task = get_task("inverted-pendulum")
    assert task.signature.startswith("def compute_reward(cart_position: float, pole_angle: float")
    assert "action: np.ndarray" in task.signature
    d = task.to_dict()
    for key in ("name", "env_id", "description", "variables", "signature", "fitness"):
        assert key in d
    assert d["variables"][0] == {"name": "cart_position", "shape": [], "unit": "m",
                                 "description": d["variables"][0]["description"], "source": "data.qpos[0]"}


def test_register_user_task() -> None:
    spec = TaskSpec(
        name="test-user-hopper",
        env_id="Hopper-v5",
        description="Hop.",
        variables=[Variable("x_velocity", (), "forward velocity", "m/s", "info['x_velocity']"),
                   Variable("action", (3,), "torques", "N m", "action")],
        fitness=Fitness("distance", "data.qpos[0]", reduce="delta"),
    )
    register_task(spec)
    assert get_task("test-user-hopper") is spec
    with pytest.raises(TaskSpecError, match="already registered"):
        register_task(spec)
    register_task(spec, overwrite=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variables": [Variable("x", (), "", "", "os.system('ls')")]}, "may use only"),
        ({"variables": [Variable("x", (), "", "", "data.qpos[")]}, "not an expression"),
        ({"variables": [Variable("_x", (), "", "", "data.qpos[0]")]}, "public identifier"),
        ({"variables": [Variable("x", (), "", "", "data.qpos[0]"), Variable("x", (), "", "", "data.qpos[1]")]},
         "declared twice"),
        ({"fitness": Fitness("f", "data.qpos[0]", reduce="median")}, "reduce"),
        ({"name": "bad name!"}, "task name"),
    ],
    ids=["bad-source-name", "syntax", "underscore", "duplicate", "bad-reduce", "bad-name"],
)
def test_bad_task_specs(kwargs: dict, match: str) -> None:
    base = {"name": "t", "env_id": "Hopper-v5", "description": "d",
            "variables": [Variable("x", (), "", "", "data.qpos[0]")],
            "fitness": Fitness("f", "data.qpos[0]")}
    with pytest.raises(TaskSpecError, match=match):
        TaskSpec(**{**base, **kwargs})


def test_bad_body_name_is_clear() -> None:
    spec = TaskSpec(name="t-bad-body", env_id="Hopper-v5", description="d",
                    variables=[Variable("h", (), "", "", 'data.body("torsoo").xpos[2]')],
                    fitness=Fitness("f", reduce="length"))
    with pytest.raises(TaskSpecError, match="torsoo"):
        StateReader(spec, spec.make_env())


def test_tasks_are_versioned() -> None:
    import dataclasses

    from rewardsmith.tasks import task_versions

    newest = get_task("halfcheetah-backward")
    assert newest.ref == "halfcheetah-backward@2"
    old = get_task("halfcheetah-backward@1")
    assert old.variable("torso_height").source == "data.qpos[1]"  # the released v1, not edited in place
    assert newest.variable("torso_height").source == 'data.body("torso").xpos[2]'
    assert [t.version for t in task_versions("halfcheetah-backward")] == [1, 2]
    assert get_task("hopper-forward").to_dict()["version"] == 1
    with pytest.raises(TaskSpecError, match="no such version"):
        get_task("hopper-forward@7")
    fixed = dataclasses.replace(get_task("reacher"), version=2, description="a fixed description")
    with pytest.raises(TaskSpecError, match="already registered"):
        register_task(dataclasses.replace(fixed, version=1))
    register_task(fixed)
    try:
        assert get_task("reacher") is fixed and get_task("reacher@1").description != fixed.description
        assert [t.name for t in list_tasks()].count("reacher") == 1
    finally:
        from rewardsmith.tasks import _REGISTRY

        del _REGISTRY["reacher"][2]


def test_mountain_car_task_reads_the_car_and_scores_success_only_at_the_flag() -> None:
    """Discrete actions through the TaskWrapper: the variables are the car's, an energy-pumping
    policy (push the way the car moves) reaches the flag, doing nothing never does."""
    from rewardsmith.wrappers import TaskWrapper

    task = get_task("mountain-car")
    env = TaskWrapper(task.make_env(), task)
    results = {}
    for name, policy in {"pump": lambda obs: 2 if obs[1] >= 0 else 0, "idle": lambda obs: 1}.items():
        obs, info = env.reset(seed=3)
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            parts = split_state(task, info["reward_state"][None])
            np.testing.assert_allclose([parts["position"][0], parts["velocity"][0]], obs, rtol=1e-6)
            assert parts["height"][0] == pytest.approx(np.sin(3 * obs[0]))
            assert reward == -1.0  # the env's own reward is untouched
            done = terminated or truncated
        results[name] = (info["episode_success"], info["episode_end"], info["episode_steps"])
    assert results["pump"][:2] == (True, "terminated") and results["pump"][2] < 200
    assert results["idle"] == (False, "truncated", 200)
    env.close()
