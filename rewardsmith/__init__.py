"""rewardsmith: reward-function design for classic reinforcement learning."""

from __future__ import annotations

__version__ = "0.1.0"

from rewardsmith.errors import RewardProgramError, RewardsmithError, TaskNotFoundError, TaskSpecError
from rewardsmith.tasks import Fitness, TaskSpec, Variable, get_task, list_tasks, register_task

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
    "register_task",
]
