"""Count-based exploration with SimHash (Tang et al., 2017): observations are hashed to ``k``
bits by the signs of a fixed Gaussian random projection; the bonus is ``1 / sqrt(n(hash))``
where ``n`` counts the hash over all of training (counted in :meth:`SimHash.update`, and also
for the transitions being scored, so a first visit gives 1).

One deviation, on by default (``offset=True``): the bits are ``sign(A g + b)`` with a fixed
Gaussian offset ``b``, not ``sign(A g)``. Hyperplanes through the origin only split space by
direction, which for a low-dimensional state (MountainCar's position and velocity, a maze's x, y)
leaves ``2k`` angular sectors and no notion of distance: far and near states in one direction share
a hash. Offset hyperplanes cut the (normalised) observations into local cells. ``offset=False``
is the paper's hash (fine for high-dimensional inputs such as images)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from rewardsmith.intrinsic.base import Bonus, TransitionBatch, flat_obs_dim, register_bonus


class SimHash(Bonus):
    """SimHash count bonus on the next observation (``k`` bits, default 32)."""

    name = "simhash"

    def __init__(self, k: int = 32, seed: int | None = 0, offset: bool = True) -> None:
        self.k, self.seed, self.offset = k, seed, offset
        self.counts: Counter = Counter()

    def setup(self, observation_space: Any, action_space: Any, n_envs: int, device: Any = "cpu") -> None:
        super().setup(observation_space, action_space, n_envs, device)
        rng = np.random.default_rng(self.seed)
        self.A = rng.standard_normal((flat_obs_dim(observation_space), self.k))
        self.b = rng.standard_normal(self.k) if self.offset else np.zeros(self.k)

    def hashes(self, obs: np.ndarray) -> list[bytes]:
        x = obs.reshape(-1, self.A.shape[0]).astype(np.float64)
        bits = np.packbits(x @ self.A + self.b > 0, axis=1)
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
        return {"counts": dict(self.counts), "A": self.A, "b": self.b}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts, self.A = Counter(state["counts"]), state["A"]
        self.b = state.get("b", np.zeros(self.k))


register_bonus("simhash", SimHash)
