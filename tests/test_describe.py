"""Describing MuJoCo envs as tasks: every gymnasium MuJoCo env, an XML model, the task file, the CLI."""

from __future__ import annotations

import os
import re

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from rewardsmith.describe import describe_env, describe_model, task_file
from rewardsmith.errors import TaskSpecError
from rewardsmith.state import StateReader, split_state
from rewardsmith.tasks import get_task
from rewardsmith.wrappers import TaskWrapper

os.environ.setdefault("MUJOCO_GL", "egl")

MUJOCO_ENVS = sorted(e for e, s in gym.registry.items()
                     if e.endswith("-v5") and "mujoco" in str(s.entry_point))
OWN_ENVS = [get_task("point-goal").env_id, get_task("point-maze").env_id]  # rewardsmith's own (module-qualified)

XML = """
<mujoco>
  <worldbody>
    <body name="cart" pos="0 0 0.1">
      <joint name="slider" type="slide" axis="1 0 0"/>
      <geom type="box" size="0.1 0.1 0.05" mass="1"/>
      <site name="cart tip" pos="0.1 0 0"/>
      <body pos="0 0 0.1">
        <joint type="hinge" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.5" size="0.02" mass="0.1"/>
      </body>
    </body>
    <body name="ball" pos="1 0 1"><freejoint name="ball_free"/><geom type="sphere" size="0.05" mass="0.2"/></body>
  </worldbody>
  <actuator><motor name="push" joint="slider" ctrlrange="-2 2" ctrllimited="true"/></actuator>
  <sensor><touch name="touch" site="cart tip"/><velocimeter name="cart_vel" site="cart tip"/></sensor>
</mujoco>
"""


class _ModelEnv:
    """The least an env needs for StateReader: an unwrapped with MuJoCo model and data."""

    def __init__(self, model, data):
        self.model, self.data, self.unwrapped = model, data, self


def test_every_gymnasium_mujoco_env_is_described_by_name():
    assert len(MUJOCO_ENVS) >= 10
    for env_id in MUJOCO_ENVS + OWN_ENVS:
        spec = describe_env(env_id)
        env = TaskWrapper(spec.make_env(), spec)
        try:
            env.reset(seed=0)
            env.action_space.seed(0)
            for _ in range(3):
                _, _, _, _, info = env.step(env.action_space.sample())
            model = env.unwrapped.model
        finally:
            env.close()
        assert np.all(np.isfinite(info["reward_state"])), env_id
        assert spec.variable("action").shape == (model.nu,)
        named = all(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, i) for i in range(1, model.nbody))
        if named:  # nothing read by index where a name exists
            assert not any(re.search(r"data\.body\(\d", v.source) for v in spec.variables), env_id
        assert len(set(spec.variable_names)) == len(spec.variables)


def test_hopper_variables_are_what_they_claim():
    spec = describe_env("Hopper-v5")
    env = TaskWrapper(spec.make_env(), spec)
    env.reset(seed=1)
    env.action_space.seed(1)
    for _ in range(20):
        env.step(env.action_space.sample())
    m, d = env.unwrapped.model, env.unwrapped.data
    mujoco.mj_forward(m, d)  # body quantities as of the current qpos/qvel
    st = split_state(spec, StateReader(spec, env).read(None, {}, np.zeros(3)))
    env.close()
    assert float(st["rootz_position"]) == pytest.approx(d.qpos[1])  # a slide joint
    assert float(st["thigh_joint_angle"]) == pytest.approx(d.joint("thigh_joint").qpos[0])
    assert st["torso_angles"][1] == pytest.approx(d.qpos[2], abs=1e-9)  # pitch = the rooty hinge
    assert np.allclose(st["foot_position"], d.body("foot").xpos)
    v = np.zeros(6)
    b = m.body("foot").id
    mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_BODY, b, v, 0)  # at the body's centre of mass
    origin = v[3:] + np.cross(v[:3], d.xpos[b] - d.xipos[b])
    assert np.allclose(st["foot_angular_velocity"], v[:3]) and np.allclose(st["foot_velocity"], origin)


def test_a_model_from_xml_gets_stable_names_units_and_index_reads_only_when_unnamed():
    model = mujoco.MjModel.from_xml_string(XML)
    data = mujoco.MjData(model)
    variables = {v.name: v for v in describe_model(model)}
    assert "body2_position" in variables and "data.body(2)" in variables["body2_position"].source  # unnamed
    assert "joint1_angle" in variables and variables["joint1_angle"].unit == "rad"
    assert variables["slider_position"].unit == "m" and variables["slider_velocity"].unit == "m/s"
    assert variables["ball_free_position"].shape == (3,) and variables["ball_free_quaternion"].shape == (4,)
    assert variables["cart_tip_position"].source == "data.site('cart tip').xpos"
    assert variables["touch"].unit == "N" and variables["touch"].shape == ()
    assert variables["cart_vel"].unit == "m/s" and variables["cart_vel"].shape == (3,)
    assert "push in [-2, 2]" in variables["action"].description
    from rewardsmith.tasks import Fitness, TaskSpec

    spec = TaskSpec("xml-test", "unused-v0", "test", tuple(variables.values()), Fitness("x", "0.0"))
    data.qpos[0] = 0.3
    mujoco.mj_forward(model, data)
    st = split_state(spec, StateReader(spec, _ModelEnv(model, data)).read(None, {}, np.zeros(1)))
    assert float(st["slider_position"]) == pytest.approx(0.3)
    assert np.allclose(st["ball_free_position"], [1, 0, 1])
    assert np.allclose(st["cart_position"], [0.3, 0, 0.1])


def test_task_file_registers_a_task_that_trains(tmp_path):
    from rewardsmith.trainer import Trainer

    path = tmp_path / "swim_task.py"
    path.write_text(task_file(describe_env("Swimmer-v5", name="my-swimmer")))
    spec = get_task(str(path))
    assert spec.name == "my-swimmer" and get_task("my-swimmer") is spec
    with Trainer(str(path), "builtin", n_envs=1, budget=256, device="cpu") as tr:
        tr.learn(256)
        fit = tr.evaluate(episodes=1)
    assert np.isfinite(fit[0])


def test_errors_are_clear(tmp_path):
    with pytest.raises(TaskSpecError, match="not a MuJoCo env"):
        describe_env("CartPole-v1")
    with pytest.raises(TaskSpecError, match="no task file"):
        get_task(str(tmp_path / "missing.py"))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(TaskSpecError, match="defines no TASK"):
        get_task(str(tmp_path / "empty.py"))


def test_cli_describe_writes_a_task_file(tmp_path):
    from typer.testing import CliRunner

    from rewardsmith.cli import app

    out = tmp_path / "reacher_task.py"
    res = CliRunner().invoke(app, ["tasks", "describe", "Reacher-v5", "--out", str(out), "--name", "my-reacher"])
    assert res.exit_code == 0, res.output
    assert "task 'my-reacher'" in res.output and out.is_file()
    shown = CliRunner().invoke(app, ["tasks", "show", str(out)])
    assert shown.exit_code == 0 and "fingertip_position" in shown.output
    bad = CliRunner().invoke(app, ["tasks", "describe", "CartPole-v1"])
    assert bad.exit_code == 1 and "not a MuJoCo env" in bad.output


@pytest.mark.parametrize("env_id", MUJOCO_ENVS + OWN_ENVS)  # ~10 s for all of them
def test_every_described_env_trains_briefly(env_id):
    from rewardsmith.trainer import Trainer

    with Trainer(describe_env(env_id), "builtin", n_envs=1, budget=256, device="cpu") as tr:
        tr.learn(256)
        assert np.isfinite(tr.evaluate(episodes=1)[0])


def test_a_synthesize_run_on_a_task_file_keeps_a_copy_and_resumes(tmp_path):
    from rewardsmith import tasks
    from rewardsmith.errors import RewardsmithError
    from rewardsmith.loop import synthesize
    from rewardsmith.settings import SynthesisConfig

    path = tmp_path / "ip_task.py"
    path.write_text(task_file(describe_env("InvertedPendulum-v5", name="described-ip")))
    out = tmp_path / "run"
    cfg = SynthesisConfig(task=str(path), coder="offline", iterations=1, samples=1, steps=256)
    with pytest.raises(RewardsmithError, match="offline coder found no task term"):
        synthesize(cfg, out=out)
    assert (out / "task.py").read_text() == path.read_text()
    path.unlink()
    tasks._REGISTRY.pop("described-ip")  # as in a fresh process: only the run's copy can bring it back
    with pytest.raises(RewardsmithError, match="offline coder found no task term"):  # not "unknown task"
        synthesize(resume=out)
    assert get_task("described-ip").env_id == "InvertedPendulum-v5"
