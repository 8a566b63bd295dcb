"""PointGoal: a point mass on a plane that must move to a random goal (a small custom MuJoCo env)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

XML_FILE = os.path.join(os.path.dirname(__file__), "assets", "point_goal.xml")
DEFAULT_CAMERA_CONFIG: dict[str, float | int] = {"distance": 3.2, "elevation": -90.0, "lookat": np.zeros(3)}


class PointGoalEnv(MujocoEnv, utils.EzPickle):
    r"""
    ## Description
    A point mass (a sphere of 1 kg) slides on a 2 m x 2 m plane. Two slide joints, ``slide_x`` and
    ``slide_y``, each driven by a motor, move it along x and y; joint damping slows it down. At
    every reset a goal marker (the mocap body ``goal``) is placed at a random position, and the
    task is to bring the point onto it and keep it there.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: the forces of the two motors (gear 2, so at most 2 N).

    | Num | Action                 | Min | Max | Name (in XML) | Joint | Type (Unit) |
    |-----|------------------------|-----|-----|---------------|-------|-------------|
    | 0   | force along x          | -1  | 1   | motor_x       | slide | force (N)   |
    | 1   | force along y          | -1  | 1   | motor_y       | slide | force (N)   |

    ## Observation Space
    ``Box(-inf, inf, (6,), float64)``:

    | Num | Observation             | Name (in XML) | Type (Unit)    |
    |-----|-------------------------|---------------|----------------|
    | 0-1 | x, y position of point  | slide_x/y     | position (m)   |
    | 2-3 | x, y velocity of point  | slide_x/y     | velocity (m/s) |
    | 4-5 | x, y position of goal   | goal          | position (m)   |

    ## Rewards
    ``reward = reward_dist + reward_ctrl`` where

    - *reward_dist*: minus the distance between the point and the goal, in m;
    - *reward_ctrl*: ``-ctrl_cost_weight * |action|^2``.

    ``info`` holds both terms and ``distance``.

    ## Starting State
    The point starts at the origin plus uniform noise in ``[-reset_noise_scale, reset_noise_scale]``
    on each coordinate, at rest; the goal is uniform in ``[-goal_range, goal_range]^2``.

    ## Episode End
    The episode never terminates; it is truncated after 100 steps (``max_episode_steps=100`` in
    the registration of ``rewardsmith/PointGoal-v0``; ``dt`` = 0.05 s, so 5 s).

    ## Arguments
    ``gymnasium.make("rewardsmith/PointGoal-v0", ...)`` (after ``import rewardsmith`` and one task
    look-up, or ``rewardsmith.register_envs()``) accepts:

    | Parameter           | Type  | Default          | Description                                  |
    |---------------------|-------|------------------|----------------------------------------------|
    | `xml_file`          | str   | `point_goal.xml` | absolute path of the MuJoCo model            |
    | `frame_skip`        | int   | 5                | MuJoCo steps per env step (timestep 0.01 s)  |
    | `ctrl_cost_weight`  | float | 0.01             | weight of the control cost                   |
    | `goal_range`        | float | 0.8              | half-width of the square the goal is drawn in |
    | `reset_noise_scale` | float | 0.05             | scale of the start-position noise            |

    ## Version History
    * v0: initial version (rewardsmith 0.1.0).
    """

    metadata = {  # noqa: RUF012 (gymnasium's convention)
        "render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"],
        "render_fps": 20,
    }

    def __init__(
        self,
        xml_file: str = XML_FILE,
        frame_skip: int = 5,
        default_camera_config: dict[str, Any] = DEFAULT_CAMERA_CONFIG,
        ctrl_cost_weight: float = 0.01,
        goal_range: float = 0.8,
        reset_noise_scale: float = 0.05,
        **kwargs: Any,
    ) -> None:
        utils.EzPickle.__init__(self, xml_file, frame_skip, default_camera_config, ctrl_cost_weight,
                                goal_range, reset_noise_scale, **kwargs)
        self._ctrl_cost_weight = ctrl_cost_weight
        self._goal_range = goal_range
        self._reset_noise_scale = reset_noise_scale
        observation_space = Box(low=-np.inf, high=np.inf, shape=(6,), dtype=np.float64)
        MujocoEnv.__init__(self, xml_file, frame_skip, observation_space=observation_space,
                           default_camera_config=default_camera_config, **kwargs)
        self._goal_mocap = int(self.model.body("goal").mocapid[0])

    @property
    def goal(self) -> np.ndarray:
        """The goal's x, y position, (2,) in m."""
        return self.data.mocap_pos[self._goal_mocap, :2].copy()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, float]]:
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        distance = float(np.linalg.norm(obs[:2] - obs[4:6]))
        reward_dist = -distance
        reward_ctrl = -self._ctrl_cost_weight * float(np.sum(np.square(action)))
        info = {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl, "distance": distance}
        if self.render_mode == "human":
            self.render()
        # truncation is left to the TimeLimit wrapper added by gymnasium.make
        return obs, reward_dist + reward_ctrl, False, False, info

    def reset_model(self) -> np.ndarray:
        noise = self._reset_noise_scale
        qpos = self.init_qpos + self.np_random.uniform(low=-noise, high=noise, size=self.model.nq)
        qvel = np.zeros(self.model.nv)
        goal = self.np_random.uniform(low=-self._goal_range, high=self._goal_range, size=2)
        self.data.mocap_pos[self._goal_mocap, :2] = goal
        self.set_state(qpos, qvel)  # runs mj_forward, so body positions are current
        return self._get_obs()

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2], self.goal])


__all__ = ["PointGoalEnv"]
