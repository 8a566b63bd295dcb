"""Learning rewards from pairwise preferences over trajectory segments.

Segments (always copies, never views of whole trajectories), batches of labelled comparisons
(1 = left preferred, 0.5 = tie), an ensemble Bradley-Terry reward model, the learned reward
as a reward source (:class:`LearnedReward`) for RewardVecEnv / relabel / the Trainer, and
scripted teachers with B-Pref's noise models.
"""

from rewardsmith.preference.model import LearnedReward, RewardModel, RewardNet, bradley_terry_loss
from rewardsmith.preference.segments import PreferenceBatch, Segment, features, sample_segments
from rewardsmith.preference.teachers import BPrefTeacher, ScriptedTeacher, Teacher, preference_accuracy

__all__ = ["BPrefTeacher", "LearnedReward", "PreferenceBatch", "RewardModel", "RewardNet", "ScriptedTeacher",
           "Segment", "Teacher", "bradley_terry_loss", "features", "preference_accuracy", "sample_segments"]
