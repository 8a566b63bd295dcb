"""rewardsmith's own gymnasium MuJoCo envs, installed as ``rewardsmith.envs``.

Importing this module registers them in gymnasium (by string entry point: the MuJoCo classes
load only when an env is made). Use their module-qualified ids, which gymnasium resolves by
importing this module itself, in any process (a spawned worker, a Ray task)::

    gymnasium.make("rewardsmith.envs:rewardsmith/PointGoal-v0")
"""

from __future__ import annotations

import gymnasium as gym

#: gymnasium id -> (entry point, max_episode_steps).
ENVS: dict[str, tuple[str, int]] = {
    "rewardsmith/PointGoal-v0": ("rewardsmith.envs.point_goal:PointGoalEnv", 100),
    "rewardsmith/PointMaze-v0": ("rewardsmith.envs.point_maze:PointMazeEnv", 400),
}


def register() -> None:
    """Register every env in :data:`ENVS` (idempotent)."""
    for env_id, (entry_point, max_steps) in ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)


register()
