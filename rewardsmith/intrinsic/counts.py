"""Count-based exploration with SimHash (Tang et al., 2017): observations are hashed to ``k``
bits by the signs of a fixed Gaussian random projection; the bonus is ``1 / sqrt(n(hash))``
where ``n`` counts the hash over all of training (counted in :meth:`SimHash.update`, and also
for the transitions being scored, so a first visit gives 1)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from rewardsmith.intrinsic.base import Bonus, TransitionBatch, flat_obs_dim, register_bonus


class SimHash(Bonus):
    """SimHash count bonus on the next observation (``k`` bits, default 32)."""

    name = "simhash"

    def __init__(self, k: int = 32, seed: int | None = 0) -> None:
        self.k, self.seed = k, seed
        self.counts: Counter = Counter()

    def setup(self, observation_space: Any, action_space: Any, n_envs: int, device: Any = "cpu") -> None:
        super().setup(observation_space, action_space, n_envs, device)
        self.A = np.random.default_rng(self.seed).standard_normal((flat_obs_dim(observation_space), self.k))

    def hashes(self, obs: np.ndarray) -> list[bytes]:
        x = obs.reshape(-1, self.A.shape[0]).astype(np.float64)
        bits = np.packbits(x @ self.A > 0, axis=1)
        return [row.tobytes() for row in bits]

    def compute(self, batch: TransitionBatch) -> np.ndarray:
        hs = self.hashes(batch.next_obs)
        pending = Counter(hs)
        n = np.array([self.counts[h] + pending[h] for h in hs], dtype=np.float64)
        return (1.0 / np.sqrt(n)).reshape(batch.shape)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        self.counts.update(self.hashes(batch.next_obs))
        return {"simhash_distinct": float(len(self.counts))}

    def state_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "A": self.A}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts, self.A = Counter(state["counts"]), state["A"]


register_bonus("simhash", SimHash)
