"""rewardsmith: reward-function design for classic reinforcement learning."""

from __future__ import annotations

__version__ = "0.1.0"

from rewardsmith.errors import (
    RewardProgramError,
    RewardsmithError,
    TaskNotFoundError,
    TaskSpecError,
)
from rewardsmith.tasks import Fitness, TaskSpec, Variable, get_task, list_tasks, register_task


def register_envs() -> None:
    """Register rewardsmith's own gymnasium envs (e.g. ``rewardsmith/PointGoal-v0``); idempotent.

    Looking up any task does this too; call it to ``gymnasium.make`` them directly.
    """
    from rewardsmith.builtin_tasks import register_envs as _register

    _register()


__all__ = [
    "Fitness",
    "RewardProgramError",
    "RewardsmithError",
    "TaskNotFoundError",
    "TaskSpec",
    "TaskSpecError",
    "Variable",
    "__version__",
    "get_task",
    "list_tasks",
    "register_envs",
    "register_task",
]
