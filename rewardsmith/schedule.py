"""Training schedules of a round: ``full`` (every candidate the whole budget) and successive halving.

Successive halving (Jamieson & Talwalkar 2016; the synchronous form of ASHA): every accepted
candidate trains a short first budget; the best ``1/eta`` of them (by fitness at that budget)
continue, each from its own checkpoint (no step is trained twice), to the next budget, ``eta``
times larger, and so on up to the full budget. Weak rewards stop early, so a round costs about
``1 + (levels - 1) / eta`` full trainings' worth of steps per ``eta**(levels-1)`` candidates instead of
one per candidate. A candidate's fitness is measured at the last budget it reached; only
candidates trained at the full budget compete for the best (:func:`rewardsmith.stages.select_by_fitness`
with ``budget``).

Each rung's fitness is recorded in ``rounds/rNN/halving.json`` as it is measured, so a resumed
run ranks exactly as the interrupted one did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rewardsmith.candidate import Candidate
from rewardsmith.executor import Executor, JobOutcome, TrainJob
from rewardsmith.fsutil import atomic_write_json, read_json
from rewardsmith.stages import evaluate
from rewardsmith.tasks import TaskSpec

HALVING_FILE = "halving.json"


def rung_budgets(steps: int, eta: int = 2, min_fraction: float = 0.25) -> list[int]:
    """The budgets of successive halving's rungs: ``steps * min_fraction``, times ``eta`` each rung,
    the last one exactly ``steps``. E.g. ``rung_budgets(100_000, 2, 0.25) == [25000, 50000, 100000]``."""
    if eta < 2:
        raise ValueError(f"eta must be at least 2, got {eta}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    levels = max(1, 1 + math.ceil(math.log(1 / min_fraction, eta) - 1e-9))
    budgets = [max(1, round(steps / eta ** (levels - 1 - i))) for i in range(levels)]
    budgets[-1] = steps
    return sorted(set(budgets))


def survivors(n: int, eta: int) -> int:
    """How many of ``n`` candidates continue to the next rung: ``ceil(n / eta)``, at least 1."""
    return max(1, math.ceil(n / eta))


def planned_jobs(n: int, steps: int, eta: int = 2, min_fraction: float = 0.25) -> int:
    """How many trainings (rungs included) successive halving runs for ``n`` candidates."""
    total = 0
    for _level in range(len(rung_budgets(steps, eta, min_fraction))):
        if n <= 0:
            break
        total += n
        n = survivors(n, eta)
    return total


def _rank_key(c: Candidate) -> float:
    f = c.fitness_mean
    return f if f is not None and math.isfinite(f) else -math.inf


def evaluate_halving(executor: Executor, cands: Sequence[Candidate], make_job: Callable[..., TrainJob],
                     rounds_dir: Path, base_seed: int, task: TaskSpec, steps: int, eta: int = 2,
                     min_fraction: float = 0.25, on_done: Callable[[JobOutcome], None] | None = None,
                     event: Callable[..., None] | None = None) -> dict[str, dict[str, Any]]:
    """Train ``cands`` by successive halving up to ``steps``; returns ``{name: last TrainResult dict}``.

    ``make_job`` is the loop's job factory (``(reward, seed, out, name, checked=)`` -> a
    :class:`TrainJob` for the full budget); each rung's job is a copy with the rung's budget that
    continues from the candidate's own folder. ``event(name, **fields)`` records each rung.
    """
    budgets = rung_budgets(steps, eta, min_fraction)
    record_path = rounds_dir / HALVING_FILE
    record = read_json(record_path)
    if not isinstance(record, dict) or record.get("budgets") != budgets:
        record = {"budgets": budgets, "eta": eta, "rungs": []}
    alive = [c for c in cands if c.status in ("accepted", "trained", "failed", "timeout") and c.source is not None]
    results: dict[str, dict[str, Any]] = {}
    for level, budget in enumerate(budgets):
        if not alive:
            break
        saved = record["rungs"][level] if level < len(record["rungs"]) else None

        def rung_job(reward: Any, seed: int, out: str, name: str, checked: bool = False,
                     _budget: int = budget) -> TrainJob:
            return replace(make_job(reward, seed, out, name, checked=checked), steps=_budget, continue_from=out)

        if saved is not None:  # measured before an interruption: restore, do not retrain
            by_name = saved["fitness"]
            for c in alive:
                _restore(c, by_name.get(c.name), budget)
        else:
            results.update(evaluate(executor, alive, rung_job, rounds_dir, base_seed, task, on_done=on_done))
        for c in alive:
            if c.trained and (not c.rungs or c.rungs[-1]["steps"] != budget):
                c.rungs.append({"steps": budget, "fitness_mean": c.fitness_mean})
        trained = [c for c in alive if c.trained and c.budget is not None and c.budget >= budget]
        ranked = sorted(trained, key=_rank_key, reverse=True)
        last = level == len(budgets) - 1
        keep = ranked if last else ranked[:survivors(len(ranked), eta)]
        if saved is None:
            record["rungs"].append({"steps": budget, "fitness": {c.name: _snapshot(c) for c in alive},
                                    "kept": [c.name for c in keep]})
            atomic_write_json(record_path, record)
        if event is not None:
            event("rung", level=level, steps=budget, trained=[c.name for c in trained],
                  kept=[c.name for c in keep] if not last else None)
        alive = keep
    return results


def _snapshot(c: Candidate) -> dict[str, Any] | None:
    if not c.trained:
        return {"status": c.status, "error": c.error, "stage": c.stage}
    return {"status": c.status, "fitness_mean": c.fitness_mean, "fitness_std": c.fitness_std,
            "success_rate": c.success_rate, "budget": c.budget, "stats": c.stats, "wall_s": c.wall_s}


def _restore(c: Candidate, snap: dict[str, Any] | None, budget: int) -> None:
    if snap is None:
        return
    c.status, c.error, c.stage = snap.get("status", c.status), snap.get("error"), snap.get("stage")
    if "fitness_mean" in snap:
        c.fitness_mean, c.fitness_std = snap["fitness_mean"], snap.get("fitness_std")
        c.success_rate, c.stats, c.wall_s = snap.get("success_rate"), snap.get("stats"), snap.get("wall_s")
        c.budget = snap.get("budget") or budget


__all__ = ["HALVING_FILE", "evaluate_halving", "planned_jobs", "rung_budgets", "survivors"]
