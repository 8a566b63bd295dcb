"""Learning rewards from pairwise preferences over trajectory segments.

Segments (always copies, never views of whole trajectories), batches of labelled comparisons
(1 = left preferred, 0.5 = tie), an ensemble Bradley-Terry reward model, and the learned reward
as a reward source (:class:`LearnedReward`) for RewardVecEnv / relabel / the Trainer.
"""

from rewardsmith.preference.model import LearnedReward, RewardModel, RewardNet, bradley_terry_loss
from rewardsmith.preference.segments import PreferenceBatch, Segment, features, sample_segments

__all__ = ["LearnedReward", "PreferenceBatch", "RewardModel", "RewardNet", "Segment", "bradley_terry_loss",
           "features", "sample_segments"]
