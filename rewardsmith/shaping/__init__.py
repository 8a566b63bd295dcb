"""Reward shaping: potential-based shaping (Ng et al. 1999) as a batch reward source and as a
gymnasium wrapper, reward transforms (normalize, sigmoid, log, symlog) and combinations
(weighted sums, gated terms, conjunctions)."""

from rewardsmith.shaping.combine import Conjunction, FunctionSource, Gated, WeightedSum
from rewardsmith.shaping.potential import PotentialShaping
from rewardsmith.shaping.transforms import Centered, Log, Normalize, Sigmoid, Symlog, Transform
from rewardsmith.shaping.wrapper import PotentialShapingWrapper

__all__ = ["Centered", "Conjunction", "FunctionSource", "Gated", "Log", "Normalize", "PotentialShaping",
           "PotentialShapingWrapper", "Sigmoid", "Symlog", "Transform", "WeightedSum"]
