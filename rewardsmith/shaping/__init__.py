"""Reward shaping: potential-based shaping (Ng et al. 1999) as a batch reward source."""

from rewardsmith.shaping.potential import PotentialShaping

__all__ = ["PotentialShaping"]
