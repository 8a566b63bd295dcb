"""Reward shaping: potential-based shaping (Ng et al. 1999) as a batch reward source and as a
gymnasium wrapper, reward transforms (normalize, sigmoid, log, symlog) and combinations
(weighted sums, gated terms, conjunctions), and potential programs (``compute_potential``,
checked like reward programs) with the shaped sparse reward they train."""

from rewardsmith.shaping.combine import Conjunction, FunctionSource, Gated, WeightedSum
from rewardsmith.shaping.potential import PotentialShaping
from rewardsmith.shaping.programs import PotentialProgram, check_potential, load_potential, shaped_sparse
from rewardsmith.shaping.transforms import Centered, Log, Normalize, Sigmoid, Symlog, Transform
from rewardsmith.shaping.wrapper import PotentialShapingWrapper

__all__ = ["Centered", "Conjunction", "FunctionSource", "Gated", "Log", "Normalize", "PotentialProgram",
           "PotentialShaping", "PotentialShapingWrapper", "Sigmoid", "Symlog", "Transform", "WeightedSum", "check_potential",
           "load_potential", "shaped_sparse"]
