"""The built-in tasks over gymnasium's MuJoCo environments (v5) and rewardsmith's own envs.

Every variable reads MuJoCo state by name or by a documented qpos/qvel index; the index layout of
each model is given in gymnasium's env docs (e.g. Hopper: qpos = [rootx, rootz, rooty, thigh, leg,
foot]). rewardsmith's own envs (package ``rewardsmith.envs``, source folder ``envs/``) are
named by module-qualified ids (``rewardsmith.envs:rewardsmith/PointGoal-v0``): gymnasium imports
``rewardsmith.envs`` itself, which registers them, so they exist in every process that makes them
(spawned workers and Ray tasks included), with no import side effect to remember.

Released task definitions are never edited: a fix is a new ``version`` of the task (see
:mod:`rewardsmith.tasks`). Version history:

- ``halfcheetah-forward`` and ``halfcheetah-backward`` v2: ``torso_height`` reads the torso's world
  height; v1 read HalfCheetah's ``rootz`` qpos, an offset from the start position, not a height.
"""

from __future__ import annotations

from rewardsmith.tasks import Fitness, TaskSpec, Variable


def register_envs() -> None:
    """Register rewardsmith's own envs (``rewardsmith/PointGoal-v0``, ...) in gymnasium; idempotent."""
    from rewardsmith.envs import register

    register()


# halfcheetah-backward has no built-in reward; its human baseline is HalfCheetah's own reward
# mirrored (velocity towards -x minus the same 0.1 * |action|^2 control cost).
MIRRORED_CHEETAH = (
    "def compute_reward(x_velocity, action):\n"
    "    backward = -x_velocity\n"
    "    ctrl = -0.1 * np.sum(action * action)\n"
    "    return backward + ctrl, {\"backward\": backward, \"ctrl\": ctrl}\n"
)


def _action(n: int) -> Variable:
    return Variable("action", (n,), "the action applied this step (joint torques, clipped to [-1, 1])", "N m", "action")


def _sparse(condition: str, name: str, params: str) -> str:
    return (
        f"def compute_reward({params}):\n"
        f"    {name} = 1.0 if {condition} else 0.0\n"
        f"    return {name}, {{\"{name}\": {name}}}\n"
    )


def _locomotion(name: str, env_id: str, description: str, n_joints: int, sign: float,
                steps: int, builtin: bool = True, builtin_desc: str = "",
                extra: tuple[Variable, ...] = (), algo_kwargs: dict | None = None,
                tags: tuple[str, ...] = (), human: str | None = None, version: int = 1,
                height: tuple[str, str] = ("height of the torso's centre above the ground",
                                           'data.body("torso").xpos[2]')) -> TaskSpec:
    direction = "forward" if sign > 0 else "backward"
    sparse_cond = "x_velocity > 1.0" if sign > 0 else "x_velocity < -1.0"
    return TaskSpec(
        name=name,
        version=version,
        env_id=env_id,
        description=description,
        variables=(
            Variable("x_velocity", (), "velocity of the torso along x (positive = forward)", "m/s", "data.qvel[0]"),
            Variable("z_velocity", (), "vertical velocity of the torso", "m/s", "data.qvel[1]"),
            Variable("torso_height", (), height[0], "m", height[1]),
            Variable("torso_angle", (), "pitch angle of the torso (0 = upright as at reset)", "rad", "data.qpos[2]"),
            Variable("torso_angular_velocity", (), "pitch angular velocity of the torso", "rad/s", "data.qvel[2]"),
            Variable("joint_angles", (n_joints,), "angles of the actuated joints", "rad", f"data.qpos[3:{3 + n_joints}]"),
            Variable("joint_velocities", (n_joints,), "angular velocities of the actuated joints", "rad/s",
                     f"data.qvel[3:{3 + n_joints}]"),
            *extra,
            _action(n_joints),
        ),
        fitness=Fitness(f"distance travelled {direction} along x during the episode", "data.qpos[0]" if sign > 0
                        else "-data.qpos[0]", reduce="delta", unit="m"),
        has_builtin_reward=builtin,
        builtin_reward_description=builtin_desc,
        human_reward=human,
        sparse_reward=_sparse(sparse_cond, "fast", "x_velocity"),
        default_steps=steps,
        algo_kwargs=algo_kwargs or {},
        tags=("locomotion", *tags),
    )


# v1 read HalfCheetah's rootz qpos, which starts at 0 (an offset, not a height); v2 the world height.
_CHEETAH_VERSIONS = (
    {"version": 1, "height": ("height of the torso's root above the ground", "data.qpos[1]")},
    {"version": 2},
)

BUILTIN_TASKS: list[TaskSpec] = [
    TaskSpec(
        name="inverted-pendulum",
        env_id="InvertedPendulum-v5",
        description="Balance a pole on a cart that slides along a rail: keep the pole upright for as long as "
                    "possible by pushing the cart left or right. The episode ends when the pole tilts more "
                    "than 0.2 rad or after 1000 steps.",
        variables=(
            Variable("cart_position", (), "position of the cart along the rail (0 = centre)", "m", "data.qpos[0]"),
            Variable("pole_angle", (), "angle of the pole from vertical", "rad", "data.qpos[1]"),
            Variable("cart_velocity", (), "velocity of the cart", "m/s", "data.qvel[0]"),
            Variable("pole_angular_velocity", (), "angular velocity of the pole", "rad/s", "data.qvel[1]"),
            Variable("action", (1,), "force applied to the cart, in [-3, 3]", "N", "action"),
        ),
        fitness=Fitness("number of steps the pole stays up (max 1000)", reduce="length", threshold=950.0, unit="steps"),
        builtin_reward_description="+1 for every step the pole is upright",
        sparse_reward=_sparse("abs(pole_angle) < 0.05", "upright", "pole_angle"),
        default_steps=50_000,
        tags=("balance",),
    ),
    TaskSpec(
        name="inverted-double-pendulum",
        env_id="InvertedDoublePendulum-v5",
        description="Balance two poles, one on top of the other, on a cart that slides along a rail. The "
                    "episode ends when the tip of the second pole falls below 1 m or after 1000 steps.",
        variables=(
            Variable("cart_position", (), "position of the cart along the rail", "m", "data.qpos[0]"),
            Variable("pole1_angle", (), "angle of the lower pole from vertical", "rad", "data.qpos[1]"),
            Variable("pole2_angle", (), "angle of the upper pole relative to the lower pole", "rad", "data.qpos[2]"),
            Variable("cart_velocity", (), "velocity of the cart", "m/s", "data.qvel[0]"),
            Variable("pole1_angular_velocity", (), "angular velocity of the lower pole", "rad/s", "data.qvel[1]"),
            Variable("pole2_angular_velocity", (), "angular velocity of the upper pole", "rad/s", "data.qvel[2]"),
            Variable("tip_x", (), "horizontal position of the upper pole's tip", "m", 'data.site("tip").xpos[0]'),
            Variable("tip_height", (), "height of the upper pole's tip (about 1.2 m when upright; "
                     "the episode ends below 1 m)", "m", 'data.site("tip").xpos[2]'),
            Variable("action", (1,), "force applied to the cart, in [-1, 1]", "N", "action"),
        ),
        fitness=Fitness("number of steps both poles stay up (max 1000)", reduce="length", threshold=950.0, unit="steps"),
        builtin_reward_description="+10 alive bonus minus tip-distance and velocity penalties",
        sparse_reward=_sparse("tip_height > 1.15", "upright", "tip_height"),
        default_steps=200_000,
        tags=("balance",),
    ),
    TaskSpec(
        name="reacher",
        env_id="Reacher-v5",
        description="Move the fingertip of a two-link planar arm to a randomly placed target and keep it "
                    "there. Episodes last 50 steps.",
        variables=(
            Variable("fingertip_position", (2,), "x, y position of the fingertip", "m", 'data.body("fingertip").xpos[:2]'),
            Variable("target_position", (2,), "x, y position of the target", "m", 'data.body("target").xpos[:2]'),
            Variable("joint_angles", (2,), "angles of the shoulder and elbow joints", "rad", "data.qpos[:2]"),
            Variable("joint_velocities", (2,), "angular velocities of the two joints", "rad/s", "data.qvel[:2]"),
            _action(2),
        ),
        fitness=Fitness("minus the final distance between fingertip and target",
                        '-np.linalg.norm(data.body("fingertip").xpos[:2] - data.body("target").xpos[:2])',
                        reduce="final", threshold=-0.02, unit="m"),
        builtin_reward_description="minus the fingertip-target distance minus a control cost",
        sparse_reward=_sparse("np.sqrt(np.sum((fingertip_position - target_position) ** 2)) < 0.02", "reached",
                              "fingertip_position, target_position"),
        default_steps=200_000,
        tags=("manipulation",),
    ),
    _locomotion("hopper-forward", "Hopper-v5",
                "Make a one-legged hopper (a planar torso, thigh, leg and foot) hop forward as fast as "
                "possible without falling. The episode ends when the torso falls below 0.7 m, tilts more "
                "than 0.2 rad, or after 1000 steps.",
                3, +1.0, 300_000,
                builtin_desc="forward velocity + 1 per step alive - 0.001 * |action|^2"),
    *[_locomotion("halfcheetah-forward", "HalfCheetah-v5",
                  "Make a planar cheetah (torso, two legs of three joints each) run forward as fast as "
                  "possible. Episodes last 1000 steps and never end early.",
                  6, +1.0, 300_000,
                  builtin_desc="forward velocity - 0.1 * |action|^2", **versioned) for versioned in _CHEETAH_VERSIONS],
    *[_locomotion("halfcheetah-backward", "HalfCheetah-v5",
                  "Make a planar cheetah (torso, two legs of three joints each) run BACKWARD (towards "
                  "negative x) as fast as possible. Episodes last 1000 steps and never end early.",
                  6, -1.0, 300_000, builtin=False, human=MIRRORED_CHEETAH, **versioned)
      for versioned in _CHEETAH_VERSIONS],
    TaskSpec(
        name="swimmer-forward",
        env_id="Swimmer-v5",
        description="Make a three-segment swimmer in a viscous fluid swim forward along x as fast as "
                    "possible. Episodes last 1000 steps.",
        variables=(
            Variable("x_velocity", (), "velocity of the front segment along x (positive = forward)", "m/s", "data.qvel[0]"),
            Variable("y_velocity", (), "sideways velocity of the front segment", "m/s", "data.qvel[1]"),
            Variable("body_angle", (), "heading angle of the front segment", "rad", "data.qpos[2]"),
            Variable("joint_angles", (2,), "angles of the two joints between segments", "rad", "data.qpos[3:5]"),
            Variable("joint_velocities", (2,), "angular velocities of the two joints", "rad/s", "data.qvel[3:5]"),
            _action(2),
        ),
        fitness=Fitness("distance travelled forward along x during the episode", "data.qpos[0]", reduce="delta", unit="m"),
        builtin_reward_description="forward velocity - 0.0001 * |action|^2",
        sparse_reward=_sparse("x_velocity > 0.1", "fast", "x_velocity"),
        default_steps=300_000,
        algo_kwargs={"ppo": {"gamma": 0.9999}},
        tags=("locomotion",),
    ),
    TaskSpec(
        name="pusher",
        env_id="Pusher-v5",
        description="Use a seven-joint robot arm to push a cylinder on a table to a goal position. Episodes "
                    "last 100 steps.",
        variables=(
            Variable("tip_position", (3,), "x, y, z position of the arm's fingertip", "m", 'data.body("tips_arm").xpos'),
            Variable("object_position", (3,), "x, y, z position of the object to push", "m", 'data.body("object").xpos'),
            Variable("goal_position", (3,), "x, y, z position of the goal", "m", 'data.body("goal").xpos'),
            Variable("joint_angles", (7,), "angles of the arm's seven joints", "rad", "data.qpos[:7]"),
            Variable("joint_velocities", (7,), "angular velocities of the arm's seven joints", "rad/s", "data.qvel[:7]"),
            _action(7),
        ),
        fitness=Fitness("minus the final distance between object and goal",
                        '-np.linalg.norm(data.body("object").xpos[:2] - data.body("goal").xpos[:2])',
                        reduce="final", threshold=-0.1, unit="m"),
        builtin_reward_description="minus object-goal distance - 0.5 * tip-object distance - 0.1 * |action|^2",
        sparse_reward=_sparse("np.sqrt(np.sum((object_position[:2] - goal_position[:2]) ** 2)) < 0.1", "pushed",
                              "object_position, goal_position"),
        default_steps=300_000,
        tags=("manipulation",),
    ),
    TaskSpec(
        name="point-goal",
        env_id="rewardsmith.envs:rewardsmith/PointGoal-v0",
        description="Drive a point mass on a 2 m x 2 m plane (two motors push it along x and y) onto a goal "
                    "marker placed at random at every reset, and stay there. Episodes last 100 steps (5 s).",
        variables=(
            Variable("position", (2,), "x, y position of the point", "m", 'data.body("point").xpos[:2]'),
            Variable("velocity", (2,), "x, y velocity of the point", "m/s", "data.qvel[:2]"),
            Variable("goal", (2,), "x, y position of the goal", "m", 'data.body("goal").xpos[:2]'),
            Variable("action", (2,), "motor commands along x and y, in [-1, 1] (force = 2 N x action)", "N",
                     "action"),
        ),
        fitness=Fitness("minus the final distance between point and goal",
                        '-np.linalg.norm(data.body("point").xpos[:2] - data.body("goal").xpos[:2])',
                        reduce="final", threshold=-0.05, unit="m"),
        builtin_reward_description="minus the point-goal distance - 0.01 * |action|^2",
        sparse_reward=_sparse("np.sqrt(np.sum((position - goal) ** 2)) < 0.05", "reached", "position, goal"),
        default_steps=50_000,
        tags=("navigation", "custom-env"),
    ),
    TaskSpec(
        name="point-maze",
        env_id="rewardsmith.envs:rewardsmith/PointMaze-v0",
        description="Drive a point mass (two motors push it along x and y, at most 2 N; damped, top speed about "
                    "1 m/s) through a small U-shaped maze to a fixed goal. The free space is x in [-0.8, 0.8] m, "
                    "y in [-0.6, 0.6] m; a middle wall (x from -0.8 to 0.4, y from -0.2 to 0.2) splits it into "
                    "a south and a north corridor joined only at the east end (x > 0.4). The point starts in "
                    "the south-west corner (-0.6, -0.4); the goal is in the north-west corner (-0.6, 0.4), "
                    "straight north behind the wall, so heading straight for it gets stuck: the way is east, "
                    "north through the gap, then west. The episode ends with success when the point is within "
                    "0.1 m of the goal, else after 400 steps (20 s). The env's own reward is sparse: 1 on "
                    "reaching the goal, else 0.",
        variables=(
            Variable("position", (2,), "x, y position of the point", "m", 'data.body("point").xpos[:2]'),
            Variable("velocity", (2,), "x, y velocity of the point", "m/s", "data.qvel[:2]"),
            Variable("goal", (2,), "x, y position of the goal (constant: -0.6, 0.4)", "m",
                     'data.body("goal").xpos[:2]'),
            Variable("distance_to_goal", (), "straight-line distance from the point to the goal (ignores walls)",
                     "m", 'np.linalg.norm(data.body("point").xpos[:2] - data.body("goal").xpos[:2])'),
            Variable("action", (2,), "motor commands along x and y, in [-1, 1] (force = 2 N x action)", "N",
                     "action"),
        ),
        fitness=Fitness("1 if the point reached the goal (within 0.1 m) during the episode, else 0",
                        'np.float64(np.linalg.norm(data.body("point").xpos[:2] - data.body("goal").xpos[:2]) < 0.1)',
                        reduce="max", threshold=1.0),
        builtin_reward_description="sparse: 1 on the step the point reaches the goal (the episode then ends), else 0",
        sparse_reward=_sparse("distance_to_goal < 0.1", "reached", "distance_to_goal"),
        default_steps=200_000,
        tags=("navigation", "custom-env", "sparse"),
    ),
    TaskSpec(
        name="mountain-car",
        env_id="MountainCar-v0",
        description="Drive an underpowered car out of a valley to the flag on top of the right hill. The "
                    "car's engine is too weak to climb straight up: it must first back up the left slope and "
                    "build momentum by rocking back and forth. Position is in [-1.2, 0.6] (the valley floor is "
                    "near -0.52, the flag at 0.5), velocity in [-0.07, 0.07]; each step the action pushes left "
                    "(0), not at all (1) or right (2). The episode ends with success when the position reaches "
                    "0.5, else after 200 steps. The env's own reward is -1 per step, so it says nothing until "
                    "the flag is first reached: a classic exploration problem.",
        variables=(
            Variable("position", (), "position of the car along the track (flag at 0.5, valley floor near -0.52)",
                     "", "obs[0]"),
            Variable("velocity", (), "velocity of the car (positive = to the right)", "1/step", "obs[1]"),
            Variable("height", (), "height of the car on the track, sin(3 * position)", "",
                     "math.sin(3.0 * obs[0])"),
            Variable("action", (1,), "the action: 0 = push left, 1 = no push, 2 = push right", "", "action"),
        ),
        fitness=Fitness("1 if the car reached the flag (position >= 0.5) during the episode, else 0",
                        "np.float64(obs[0] >= 0.5)", reduce="max", threshold=1.0),
        builtin_reward_description="-1 per step until the flag is reached (the episode then ends)",
        sparse_reward=_sparse("position >= 0.5", "reached", "position"),
        default_steps=200_000,
        tags=("classic-control", "sparse"),
    ),
    TaskSpec(
        name="pendulum",
        env_id="Pendulum-v1",
        description="Swing a pendulum up from a random start and balance it upright. A motor at the pivot "
                    "applies a torque in [-2, 2] N m, too weak to lift the pendulum straight up from hanging: "
                    "it must swing back and forth to build up energy, then catch and hold it at the top. The "
                    "angle is 0 when upright and +-pi when hanging down; the angular velocity is capped at "
                    "+-8 rad/s. Every episode lasts 200 steps (10 s) and never ends early. The env's own "
                    "reward is -(angle^2 + 0.1 * angular_velocity^2 + 0.001 * torque^2) per step.",
        variables=(
            Variable("angle", (), "angle of the pendulum from upright (0 = upright, +-pi = hanging down), in "
                     "[-pi, pi]", "rad", "math.atan2(obs[1], obs[0])"),
            Variable("angular_velocity", (), "angular velocity of the pendulum, in [-8, 8]", "rad/s", "obs[2]"),
            Variable("action", (1,), "torque applied at the pivot, in [-2, 2]", "N m", "action"),
        ),
        # The env's reward is a cost of the state *before* the step, which the observation after it
        # cannot always give back (the velocity clipped at +-8 rad/s loses it), so the fitness sums
        # the env's own reward, which TaskWrapper keeps in info["env_reward"] before measuring.
        fitness=Fitness("the episode's return of the env's own reward: minus the sum over its 200 steps of "
                        "angle^2 + 0.1 * angular_velocity^2 + 0.001 * torque^2",
                        'info["env_reward"]', reduce="sum", threshold=-200.0),
        builtin_reward_description="-(angle^2 + 0.1 * angular_velocity^2 + 0.001 * torque^2) per step "
                                   "(of the state before the step, torque clipped to [-2, 2])",
        sparse_reward=_sparse("abs(angle) < 0.3", "upright", "angle"),
        default_steps=100_000,
        # rl-baselines3-zoo's Pendulum-v1 settings: zoo runs 4 envs x n_steps 1024 = 4096 steps a
        # rollout; n_steps is per env, so 512 gives the same 4096 at the Trainer's default 8 envs.
        # batch_size 64 is SB3's default, which zoo keeps.
        algo_kwargs={
            "ppo": {"n_steps": 512, "batch_size": 64, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10,
                    "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2, "use_sde": True,
                    "sde_sample_freq": 4},
            "sac": {"learning_rate": 1e-3},
        },
        tags=("classic-control", "swing-up"),
    ),
]
