"""Describe any MuJoCo env as a task: its model's named elements become reward-state variables.

:func:`describe_model` turns an ``MjModel`` into :class:`~rewardsmith.tasks.Variable` s:

* every body but the world: its position (``xpos``, m), its orientation as roll / pitch / yaw
  (rad, from ``xmat``), its linear velocity at the body's origin and its angular velocity (world
  frame, from ``cvel`` moved from the subtree centre of mass to the body);
* every joint, by type: a hinge's angle and angular velocity, a slide's position and velocity, a
  ball's quaternion and angular velocity, a free joint's position, quaternion, linear and angular
  velocity (``data.joint(name).qpos`` / ``qvel``);
* every site's position, every sensor's reading (units by sensor type);
* the action, with each actuator's name and control range in its description.

Elements are read by name (``data.body("torso").xpos``); an element without a name gets a stable
one from its kind and index (``body3``) and is read by that index, since nothing else identifies
it. :func:`describe_env` adds what the env knows (its id, ``dt``, episode limit) and
:func:`task_file` writes a task file for the user to edit (description and fitness).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any

from rewardsmith.tasks import Fitness, TaskSpec, Variable

# mjtSensor -> unit (by enum name; the rest get no unit)
_SENSOR_UNITS = {"TOUCH": "N", "ACCELEROMETER": "m/s^2", "VELOCIMETER": "m/s", "GYRO": "rad/s", "FORCE": "N",
                 "TORQUE": "N m", "MAGNETOMETER": "T", "RANGEFINDER": "m", "JOINTPOS": "rad", "JOINTVEL": "rad/s",
                 "TENDONPOS": "m", "TENDONVEL": "m/s", "ACTUATORPOS": "", "ACTUATORVEL": "", "ACTUATORFRC": "N",
                 "FRAMEPOS": "m", "FRAMELINVEL": "m/s", "FRAMEANGVEL": "rad/s", "FRAMELINACC": "m/s^2",
                 "FRAMEANGACC": "rad/s^2", "SUBTREECOM": "m", "SUBTREELINVEL": "m/s"}


def _ident(name: str) -> str:
    """``name`` as a Python identifier (lower case, ``_`` for anything else, never a keyword)."""
    s = re.sub(r"\W+", "_", name.strip()).strip("_").lower() or "x"
    if s[0].isdigit():
        s = f"n{s}"
    return f"{s}_" if keyword.iskeyword(s) or s in ("np", "math", "data", "model", "obs", "info", "action") else s


@dataclass
class _Names:
    """Unique variable names: a clash gets the element kind appended, then a counter."""

    used: set[str]

    def take(self, base: str, kind: str) -> str:
        name = base if base not in self.used else f"{base}_{kind}"
        k = 2
        while name in self.used:
            name, k = f"{base}_{kind}{k}", k + 1
        self.used.add(name)
        return name


def _element(model: Any, objtype: Any, i: int, kind: str) -> tuple[str, str]:
    """``(identifier stem, accessor)`` of element ``i``: by name when it has one, else by index."""
    import mujoco

    raw = mujoco.mj_id2name(model, objtype, i)
    if raw:
        return _ident(raw), f"{kind}({raw!r})"
    return f"{kind}{i}", f"{kind}({i})"


def _euler(acc: str) -> str:
    m = f"data.{acc}.xmat"
    return (f"np.array([math.atan2({m}[7], {m}[8]), math.asin(np.clip(-{m}[6], -1.0, 1.0)), "
            f"math.atan2({m}[3], {m}[0])])")


def describe_model(model: Any, *, bodies: bool = True, joints: bool = True, sites: bool = True,
                   sensors: bool = True, action: bool = True) -> list[Variable]:
    """The variables of ``model`` (an ``mujoco.MjModel``), in a stable order (see the module docstring)."""
    import mujoco

    names = _Names({"action"})
    out: list[Variable] = []
    obj = mujoco.mjtObj
    if bodies:
        for i in range(1, model.nbody):
            stem, acc = _element(model, obj.mjOBJ_BODY, i, "body")
            root = int(model.body_rootid[i])
            _, root_acc = _element(model, obj.mjOBJ_BODY, root, "body")
            b = f"data.{acc}"
            out += [
                Variable(names.take(f"{stem}_position", "body"), (3,), f"x, y, z of body {stem!r} (world frame)",
                         "m", f"{b}.xpos"),
                Variable(names.take(f"{stem}_angles", "body"), (3,),
                         f"roll, pitch, yaw of body {stem!r} (world frame, from its rotation matrix)", "rad",
                         _euler(acc)),
                Variable(names.take(f"{stem}_velocity", "body"), (3,),
                         f"linear velocity of body {stem!r}'s origin (world frame)", "m/s",
                         f"{b}.cvel[3:] + np.cross({b}.cvel[:3], {b}.xpos - data.{root_acc}.subtree_com)"),
                Variable(names.take(f"{stem}_angular_velocity", "body"), (3,),
                         f"angular velocity of body {stem!r} (world frame)", "rad/s", f"{b}.cvel[:3]"),
            ]
    if joints:
        for i in range(model.njnt):
            stem, acc = _element(model, obj.mjOBJ_JOINT, i, "joint")
            j, kind = f"data.{acc}", int(model.jnt_type[i])
            if kind == mujoco.mjtJoint.mjJNT_HINGE:
                out += [Variable(names.take(f"{stem}_angle", "joint"), (), f"angle of hinge joint {stem!r}", "rad",
                                 f"{j}.qpos[0]"),
                        Variable(names.take(f"{stem}_angular_velocity", "joint"), (),
                                 f"angular velocity of hinge joint {stem!r}", "rad/s", f"{j}.qvel[0]")]
            elif kind == mujoco.mjtJoint.mjJNT_SLIDE:
                out += [Variable(names.take(f"{stem}_position", "joint"), (), f"position of slide joint {stem!r}",
                                 "m", f"{j}.qpos[0]"),
                        Variable(names.take(f"{stem}_velocity", "joint"), (), f"velocity of slide joint {stem!r}",
                                 "m/s", f"{j}.qvel[0]")]
            elif kind == mujoco.mjtJoint.mjJNT_BALL:
                out += [Variable(names.take(f"{stem}_quaternion", "joint"), (4,),
                                 f"orientation (w, x, y, z) of ball joint {stem!r}", "", f"{j}.qpos"),
                        Variable(names.take(f"{stem}_angular_velocity", "joint"), (3,),
                                 f"angular velocity of ball joint {stem!r} (local frame)", "rad/s", f"{j}.qvel")]
            else:  # free
                out += [Variable(names.take(f"{stem}_position", "joint"), (3,),
                                 f"x, y, z of free joint {stem!r}", "m", f"{j}.qpos[:3]"),
                        Variable(names.take(f"{stem}_quaternion", "joint"), (4,),
                                 f"orientation (w, x, y, z) of free joint {stem!r}", "", f"{j}.qpos[3:7]"),
                        Variable(names.take(f"{stem}_velocity", "joint"), (3,),
                                 f"linear velocity of free joint {stem!r} (world frame)", "m/s", f"{j}.qvel[:3]"),
                        Variable(names.take(f"{stem}_angular_velocity", "joint"), (3,),
                                 f"angular velocity of free joint {stem!r} (local frame)", "rad/s",
                                 f"{j}.qvel[3:6]")]
    if sites:
        for i in range(model.nsite):
            stem, acc = _element(model, obj.mjOBJ_SITE, i, "site")
            out.append(Variable(names.take(f"{stem}_position", "site"), (3,), f"x, y, z of site {stem!r}", "m",
                                f"data.{acc}.xpos"))
    if sensors:
        for i in range(model.nsensor):
            stem, acc = _element(model, obj.mjOBJ_SENSOR, i, "sensor")
            kind = mujoco.mjtSensor(int(model.sensor_type[i])).name.removeprefix("mjSENS_")
            dim = int(model.sensor_dim[i])
            out.append(Variable(names.take(stem, "sensor"), () if dim == 1 else (dim,),
                                f"{kind.lower()} sensor {stem!r}", _SENSOR_UNITS.get(kind, ""),
                                f"data.{acc}.data[0]" if dim == 1 else f"data.{acc}.data"))
    if action and model.nu:
        parts = []
        for i in range(model.nu):
            stem, _ = _element(model, obj.mjOBJ_ACTUATOR, i, "actuator")
            lo, hi = model.actuator_ctrlrange[i]
            parts.append(f"{stem} in [{lo:g}, {hi:g}]" if model.actuator_ctrllimited[i] else f"{stem} (unlimited)")
        out.append(Variable("action", (int(model.nu),), "the action, one control per actuator: " + ", ".join(parts),
                            "control", "action"))
    return out


def describe_env(env_id: str, name: str | None = None, description: str | None = None,
                 fitness: Fitness | None = None, **env_kwargs: Any) -> TaskSpec:
    """A task for any MuJoCo env ``gymnasium.make(env_id)`` can build (see :func:`describe_model`).

    Without ``fitness`` the episode's return of the env's own reward is the fitness; without
    ``description`` a placeholder names the env, its ``dt`` and episode limit: edit both (a
    coder writes from the description).
    """
    import gymnasium as gym

    from rewardsmith.errors import TaskSpecError

    env = gym.make(env_id, **env_kwargs)
    try:
        base = env.unwrapped
        model = getattr(base, "model", None)
        if model is None or not hasattr(model, "nbody"):
            raise TaskSpecError(f"{env_id} is not a MuJoCo env (its unwrapped env has no MjModel `model`)")
        variables = describe_model(model)
        dt = float(getattr(base, "dt", model.opt.timestep))
        limit = getattr(env.spec, "max_episode_steps", None) if env.spec is not None else None
    finally:
        env.close()
    end = f"; episodes are cut after {limit} steps" if limit else ""
    return TaskSpec(
        name=name or _ident(env_id.split(":")[-1]).replace("_", "-"),
        env_id=env_id,
        description=description or (f"TODO: describe the behaviour you want in {env_id} "
                                    f"(one control step is {dt:g} s{end})."),
        variables=tuple(variables),
        fitness=fitness or Fitness("the episode's return of the env's own reward (TODO: the true measure)",
                                   'info["env_reward"]', reduce="sum"),
        env_kwargs=env_kwargs,
        builtin_reward_description=f"{env_id}'s own reward",
        tags=("described",),
    )


def task_file(spec: TaskSpec) -> str:
    """A Python file that registers ``spec`` (``rewardsmith ... --task FILE.py`` loads it)."""
    lines = ['"""A rewardsmith task, described automatically from the env\'s MuJoCo model: edit the description and',
             'the fitness (the variables are read by name; delete those a reward should not see)."""', "",
             "from rewardsmith import Fitness, TaskSpec, Variable, register_task", "",
             "TASK = register_task(TaskSpec(",
             f"    name={spec.name!r},", f"    env_id={spec.env_id!r},",
             f"    description={spec.description!r},", "    variables=["]
    for v in spec.variables:
        lines.append(f"        Variable({v.name!r}, {v.shape!r}, {v.description!r}, {v.unit!r},")
        lines.append(f"                 {v.source!r}),")
    f = spec.fitness
    lines += ["    ],",
              f"    fitness=Fitness({f.description!r}, {f.source!r}, reduce={f.reduce!r}, threshold={f.threshold!r}),"]
    if spec.env_kwargs:
        lines.append(f"    env_kwargs={dict(spec.env_kwargs)!r},")
    lines += [f"    builtin_reward_description={spec.builtin_reward_description!r},",
              f"    tags={tuple(spec.tags)!r},", "), overwrite=True)", ""]
    return "\n".join(lines)


__all__ = ["describe_env", "describe_model", "task_file"]
