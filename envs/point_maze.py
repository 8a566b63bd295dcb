"""PointMaze: a point mass that must find its way round a wall to a far goal (sparse reward)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

XML_FILE = os.path.join(os.path.dirname(__file__), "assets", "point_maze.xml")
DEFAULT_CAMERA_CONFIG: dict[str, float | int] = {"distance": 3.2, "elevation": -90.0, "lookat": np.zeros(3)}
START = np.array([-0.6, -0.4])
GOAL = np.array([-0.6, 0.4])


class PointMazeEnv(MujocoEnv, utils.EzPickle):
    r"""
    ## Description
    A point mass (a sphere of 1 kg, radius 5 cm) slides in a small U-shaped maze. Two slide joints,
    ``slide_x`` and ``slide_y``, each driven by a motor, move it along x and y; joint damping slows
    it down. The free space is 1.6 m x 1.2 m; a middle wall (x from -0.8 to 0.4 m, y from -0.2 to
    0.2 m) splits it into a south and a north corridor joined only at the east end. The point starts
    in the south-west corner, the fixed goal is in the north-west corner, 0.8 m away straight
    north, behind the middle wall: driving straight at it gets stuck; the way round is about 2.4 m
    (east, north through the gap, west). The reward is sparse.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: the forces of the two motors (gear 2, so at most 2 N).

    | Num | Action                 | Min | Max | Name (in XML) | Joint | Type (Unit) |
    |-----|------------------------|-----|-----|---------------|-------|-------------|
    | 0   | force along x          | -1  | 1   | motor_x       | slide | force (N)   |
    | 1   | force along y          | -1  | 1   | motor_y       | slide | force (N)   |

    ## Observation Space
    ``Box(-inf, inf, (4,), float64)`` (the goal is fixed, at (-0.6, 0.4), so not observed):

    | Num | Observation             | Name (in XML) | Type (Unit)    |
    |-----|-------------------------|---------------|----------------|
    | 0-1 | x, y position of point  | slide_x/y     | position (m)   |
    | 2-3 | x, y velocity of point  | slide_x/y     | velocity (m/s) |

    ## Rewards
    1.0 on the step the point comes within ``goal_radius`` of the goal, else 0. ``info`` holds
    ``distance`` (straight-line distance to the goal, in m) and ``success``.

    ## Starting State
    The point starts at (-0.6, -0.4) plus uniform noise in ``[-reset_noise_scale, reset_noise_scale]``
    on each coordinate, at rest.

    ## Episode End
    The episode terminates when the point reaches the goal; it is truncated after 400 steps
    (``max_episode_steps=400`` in the registration of ``rewardsmith/PointMaze-v0``; ``dt`` = 0.05 s,
    so 20 s).

    ## Arguments
    ``gymnasium.make("rewardsmith.envs:rewardsmith/PointMaze-v0", ...)`` accepts:

    | Parameter           | Type  | Default          | Description                                  |
    |---------------------|-------|------------------|----------------------------------------------|
    | `xml_file`          | str   | `point_maze.xml` | absolute path of the MuJoCo model            |
    | `frame_skip`        | int   | 5                | MuJoCo steps per env step (timestep 0.01 s)  |
    | `goal_radius`       | float | 0.1              | distance to the goal that counts as reached  |
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
        goal_radius: float = 0.1,
        reset_noise_scale: float = 0.05,
        **kwargs: Any,
    ) -> None:
        utils.EzPickle.__init__(self, xml_file, frame_skip, default_camera_config, goal_radius,
                                reset_noise_scale, **kwargs)
        self._goal_radius = goal_radius
        self._reset_noise_scale = reset_noise_scale
        observation_space = Box(low=-np.inf, high=np.inf, shape=(4,), dtype=np.float64)
        MujocoEnv.__init__(self, xml_file, frame_skip, observation_space=observation_space,
                           default_camera_config=default_camera_config, **kwargs)

    @property
    def goal(self) -> np.ndarray:
        """The goal's x, y position, (2,) in m."""
        return self.data.body("goal").xpos[:2].copy()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        distance = float(np.linalg.norm(obs[:2] - self.goal))
        success = distance < self._goal_radius
        if self.render_mode == "human":
            self.render()
        # truncation is left to the TimeLimit wrapper added by gymnasium.make
        return obs, 1.0 if success else 0.0, success, False, {"distance": distance, "success": success}

    def reset_model(self) -> np.ndarray:
        noise = self._reset_noise_scale
        qpos = START + self.np_random.uniform(low=-noise, high=noise, size=self.model.nq)
        self.set_state(qpos, np.zeros(self.model.nv))
        return self._get_obs()

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2]])


__all__ = ["GOAL", "START", "PointMazeEnv"]
