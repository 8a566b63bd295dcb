"""Intrinsic (exploration) bonuses for RL training: RND, ICM, SimHash counts, NGU's episodic
novelty, E3B, NGU, the LLM-labelled ONI bonus, and the SB3 callback that adds them to the
rewards (through GAE for on-policy, into the replay buffer for off-policy)."""
from rewardsmith.intrinsic.base import Bonus, RunningStd, TransitionBatch, bonus_names, make_bonus, register_bonus
from rewardsmith.intrinsic.callback import IntrinsicCallback
from rewardsmith.intrinsic.e3b import E3B
from rewardsmith.intrinsic.episodic import EpisodicNovelty, InverseDynamicsEmbedding
from rewardsmith.intrinsic.labellers import CoderLabeller, OfflineLabeller
from rewardsmith.intrinsic.ngu import NGU
from rewardsmith.intrinsic.oni import ONI

__all__ = ["E3B", "NGU", "ONI", "Bonus", "CoderLabeller", "EpisodicNovelty", "IntrinsicCallback",
           "InverseDynamicsEmbedding", "OfflineLabeller", "RunningStd", "TransitionBatch", "bonus_names",
           "make_bonus", "register_bonus"]
