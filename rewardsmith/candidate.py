"""A candidate reward program as it travels through the loop's stages, and the loop's seeds."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

#: Candidate statuses, in the order the stages set them.
STATUSES = ("proposed", "rejected", "accepted", "trained", "failed", "timeout")


@dataclass
class Candidate:
    """One reward program of one round.

    Attributes:
        round, index: where it was proposed (0-based).
        source: the extracted program (None when the reply held no code).
        status: ``rejected`` (extract / check / sample failed, repairs included), ``accepted``
            (checked, not yet trained), ``trained``, ``failed`` (training raised or its worker
            died) or ``timeout`` (killed past its time limit).
        error: the one-line reason for ``rejected`` / ``failed`` / ``timeout``.
        stage: the stage that rejected it (``sample``, ``extract``, ``validate``, ``compile``,
            ``probe``, ``screen``, ``training``, ``timeout``).
        components: the program's component names.
        notes: non-fatal remarks from the check (e.g. components that do not add up).
        attempts: one entry per check attempt (``ok``, ``error``, ``stage``).
        seed: the training seed.
        fitness_mean, fitness_std, success_rate, wall_s: the training's evaluation.
        stats: the reflection on its training (what the coder reads next round).
        budget: environment steps it was trained for (with successive halving, the budget of the
            last rung it reached; its fitness is measured there).
        rungs: with successive halving, its fitness at each rung it reached (``{"steps", "fitness_mean"}``).
        gif: a rollout GIF, or why there is none (interactive runs).
        screen: the pre-screen's verdict (:class:`rewardsmith.screen.ScreenVerdict` as a dict), or
            None when it was not screened (``--screen off``, or not accepted).
    """

    round: int
    index: int
    source: str | None = None
    status: str = "proposed"
    error: str | None = None
    stage: str | None = None
    components: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    seed: int | None = None
    fitness_mean: float | None = None
    fitness_std: float | None = None
    success_rate: float | None = None
    wall_s: float | None = None
    stats: dict[str, Any] | None = None
    budget: int | None = None
    rungs: list[dict[str, Any]] = field(default_factory=list)
    gif: str | None = None
    screen: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """``rNN/cMM``: its folder under ``rounds/``."""
        return f"r{self.round:02d}/c{self.index:02d}"

    @property
    def trained(self) -> bool:
        """Whether it has a fitness."""
        return self.fitness_mean is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        """From :meth:`to_dict` output (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        cand = cls(**{k: v for k, v in data.items() if k in names})
        if cand.status == "proposed":  # files of earlier versions had no status
            cand.status = "trained" if cand.trained else ("rejected" if cand.error else "accepted")
        return cand


#: Seeds are ``STRIDE`` apart: a training seeds its env i with ``seed + i`` (SB3's convention), so
#: seeds closer than the number of envs would share env streams and not be fresh.
STRIDE = 100


def candidate_seed(base: int, round_idx: int, index: int) -> int:
    """The training seed of candidate ``index`` of round ``round_idx``.

    ``base + 100_000*(round+1) + 100*index``: disjoint from :func:`final_seeds` (``base + 100*k``,
    k < 1000) for every round, from each other while ``index < 1000``, and every two seeds are at
    least :data:`STRIDE` apart, so trainings with up to 100 envs share no env stream.
    """
    if not 0 <= index < 1000:
        raise ValueError(f"candidate index must be in [0, 1000), got {index}")
    return base + STRIDE * 1000 * (round_idx + 1) + STRIDE * index


def final_seeds(base: int, n: int) -> list[int]:
    """The fresh seeds of the final re-training and the baselines: ``base + 100*k`` for k < n (< 1000)."""
    if not 0 < n < 1000:
        raise ValueError(f"the number of final seeds must be in [1, 1000), got {n}")
    return [base + STRIDE * k for k in range(n)]


__all__ = ["STATUSES", "Candidate", "candidate_seed", "final_seeds"]
