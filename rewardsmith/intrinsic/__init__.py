"""Intrinsic (exploration) bonuses for RL training: RND, ICM, SimHash counts, and the SB3
callback that adds them to the rewards (through GAE for on-policy, into the replay buffer
for off-policy)."""
from rewardsmith.intrinsic.base import Bonus, RunningStd, TransitionBatch, bonus_names, make_bonus, register_bonus
from rewardsmith.intrinsic.callback import IntrinsicCallback

__all__ = ["Bonus", "RunningStd", "TransitionBatch", "IntrinsicCallback", "make_bonus", "register_bonus",
           "bonus_names"]
