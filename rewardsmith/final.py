"""The finalize stage: re-train the best program on fresh seeds beside the baselines; the summary.

The best program's search fitness is one lucky seed among many candidates (the winner's curse);
its re-trained fitness on fresh seeds, with the human (built-in) and sparse baselines trained at
the same budget on the same seeds, is what the summary reports, with IQMs, bootstrap intervals
and the human-normalised score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rewardsmith.candidate import Candidate, final_seeds
from rewardsmith.executor import Executor, JobOutcome, TrainJob
from rewardsmith.tasks import TaskSpec


def final_plans(task: TaskSpec, best: Candidate, baselines: bool) -> dict[str, Any]:
    """``{method: reward}``: the best program and, when wanted, the human and sparse baselines."""
    plans: dict[str, Any] = {"best": best.source}
    if baselines:
        human = "builtin" if task.has_builtin_reward else task.human_reward
        if human is not None:
            plans["human"] = human
        if task.sparse_reward:
            plans["sparse"] = "sparse"
    return plans


def finalize(task: TaskSpec, best: Candidate, history: Sequence[Candidate], executor: Executor,
             make_job: Callable[..., TrainJob], run_path: Path, base_seed: int, n_seeds: int,
             baselines: bool, on_done: Callable[[JobOutcome], None] | None = None) -> dict[str, Any]:
    """Run the final trainings and return the summary (without usage, wall time and report)."""
    from rewardsmith.stats import human_normalized, summarize

    seeds = final_seeds(base_seed, n_seeds)
    jobs, keys = [], []
    for name, reward in final_plans(task, best, baselines).items():
        for s in seeds:
            folder = "final" if name == "best" else f"baselines/{name}"
            # the best program passed the full check when it was accepted
            jobs.append(make_job(reward, s, str(run_path / folder / f"seed{s}"), f"{folder}/seed{s}",
                                 checked=name == "best"))
            keys.append(name)
    outcomes = executor.run(jobs, on_done=on_done)
    by: dict[str, list[float]] = {}
    failures: dict[str, list[str]] = {}
    for name, outcome in zip(keys, outcomes):
        if outcome.result is not None:
            by.setdefault(name, []).append(outcome.result["fitness_mean"])
        else:
            failures.setdefault(name, []).append(f"{outcome.job.name}: {outcome.error}")
    stats = {name: summarize(vals) for name, vals in by.items()}
    hns, hns_note = None, None
    if {"best", "human", "sparse"} <= set(stats):
        hns = human_normalized(stats["best"].iqm, stats["human"].iqm, stats["sparse"].iqm)
        gap = abs(stats["human"].iqm - stats["sparse"].iqm)
        if hns is None:
            hns_note = "undefined: the human and sparse baselines score the same"
        elif gap < max(stats["human"].std, stats["sparse"].std):
            hns_note = (f"unreliable: the human-sparse gap ({gap:.3g}) is smaller than the baselines' spread "
                        "across seeds; compare the raw fitness instead")
    elif "best" not in stats:
        hns_note = "undefined: every re-training of the best program failed"
    b = stats.get("best")
    return {
        "task": task.name, "task_version": task.version, "seeds": seeds,
        "best": {"fitness_mean": b.mean if b else None, "fitness_std": b.std if b else None,
                 "fitness_iqm": b.iqm if b else None, "ci95": [b.ci_low, b.ci_high] if b else None,
                 "n": b.n if b else 0,
                 "search_fitness": best.fitness_mean, "round": best.round, "index": best.index,
                 "source": str(run_path / "best_reward.py"), "components": best.components},
        "baselines": {name: (stats[name].to_dict() if name in stats else None) for name in ("human", "sparse")},
        "hns": hns,
        "hns_basis": "IQM over seeds of each method",
        "hns_note": hns_note,
        "final_failures": failures,
        "candidates": [{"round": c.round, "index": c.index, "status": c.status, "fitness_mean": c.fitness_mean,
                        "error": c.error} for c in history],
    }


__all__ = ["final_plans", "finalize"]
