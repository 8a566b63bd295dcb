"""Learning rewards from pairwise preferences over trajectory segments.

Segments (always copies, never views of whole trajectories), batches of labelled comparisons
(1 = left preferred, 0.5 = tie), an ensemble Bradley-Terry reward model, the learned reward
as a reward source (:class:`LearnedReward`) for RewardVecEnv / relabel / the Trainer, and
scripted teachers with B-Pref's noise models; segment teachers (:func:`make_teacher`: scripted,
human with GIFs in the terminal, LLM through the coder protocol), query selection
(:func:`select_queries`: uniform, disagreement, entropy) and the PbRL loop
(:mod:`rewardsmith.preference.pbrl`, ``rewardsmith prefs``).
"""

from rewardsmith.preference.model import LearnedReward, RewardModel, RewardNet, bradley_terry_loss
from rewardsmith.preference.queries import SELECTIONS, query_schedule, select_queries
from rewardsmith.preference.segments import PreferenceBatch, Segment, features, sample_segments
from rewardsmith.preference.teachers import (
           BPrefTeacher,
           ScriptedTeacher,
           Teacher,
           preference_accuracy,
)
from rewardsmith.preference.teaching import RewardTeacher, SegmentTeacher, make_teacher

__all__ = ["SELECTIONS", "BPrefTeacher", "LearnedReward", "PreferenceBatch", "RewardModel", "RewardNet",
           "RewardTeacher", "ScriptedTeacher", "Segment", "SegmentTeacher", "Teacher", "bradley_terry_loss",
           "features", "make_teacher", "preference_accuracy", "query_schedule", "sample_segments",
           "select_queries"]
