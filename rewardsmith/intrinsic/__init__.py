"""Intrinsic (exploration) bonuses for RL training: RND, ICM, SimHash counts, the episodic
NGU novelty, E3B and NGU, and the SB3
callback that adds them to the rewards (through GAE for on-policy, into the replay buffer
for off-policy)."""
from rewardsmith.intrinsic.base import Bonus, RunningStd, TransitionBatch, bonus_names, make_bonus, register_bonus
from rewardsmith.intrinsic.callback import IntrinsicCallback
from rewardsmith.intrinsic.e3b import E3B
from rewardsmith.intrinsic.episodic import EpisodicNovelty, InverseDynamicsEmbedding
from rewardsmith.intrinsic.ngu import NGU

__all__ = ["Bonus", "RunningStd", "TransitionBatch", "IntrinsicCallback", "make_bonus", "register_bonus",
           "bonus_names", "EpisodicNovelty", "InverseDynamicsEmbedding", "E3B", "NGU"]
