"""The finalize stage: re-train the finalists on fresh seeds beside the baselines; the summary.

The best program's search fitness is one lucky seed among many candidates (the winner's curse);
its re-trained fitness on fresh seeds, with the human (built-in) and sparse baselines trained at
the same budget on the same seeds, is what the summary reports, with IQMs, bootstrap intervals
and the human-normalised score. With more than one finalist (the default of successive halving:
the two best by search fitness), each is re-trained on the same fresh seeds and the one with the
highest IQM over them wins, so the choice rests on several seeds rather than one; the summary
keeps every finalist's search and re-trained fitness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rewardsmith.candidate import Candidate, final_seeds
from rewardsmith.executor import Executor, JobOutcome, TrainJob
from rewardsmith.tasks import TaskSpec


def final_plans(task: TaskSpec, best: Candidate | Sequence[Candidate], baselines: bool) -> dict[str, Any]:
    """``{method: reward}``: the finalists (``best`` alone: ``"best"``; several: by name) and, when
    wanted, the human and sparse baselines."""
    finalists = [best] if isinstance(best, Candidate) else list(best)
    plans: dict[str, Any] = ({"best": finalists[0].source} if len(finalists) == 1
                             else {f"finalist {c.name}": c.source for c in finalists})
    if baselines:
        human = "builtin" if task.has_builtin_reward else task.human_reward
        if human is not None:
            plans["human"] = human
        if task.sparse_reward:
            plans["sparse"] = "sparse"
    return plans


def _folder(name: str) -> str:
    if name == "best":
        return "final"
    if name.startswith("finalist "):
        return "final/" + name.split(" ", 1)[1].replace("/", "")
    return f"baselines/{name}"


def finalize(task: TaskSpec, best: Candidate | Sequence[Candidate], history: Sequence[Candidate],
             executor: Executor, make_job: Callable[..., TrainJob], run_path: Path, base_seed: int, n_seeds: int,
             baselines: bool, on_done: Callable[[JobOutcome], None] | None = None) -> dict[str, Any]:
    """Run the final trainings and return the summary (without usage, wall time and report).

    ``best`` is the finalist, or the finalists in search order; the winner (``summary["best"]``)
    is the finalist with the highest IQM over the final seeds (the earlier one on ties).
    """
    from rewardsmith.stats import human_normalized, summarize

    finalists = [best] if isinstance(best, Candidate) else list(best)
    seeds = final_seeds(base_seed, n_seeds)
    jobs, keys = [], []
    for name, reward in final_plans(task, finalists, baselines).items():
        for s in seeds:
            folder = _folder(name)
            # the finalists passed the full check when they were accepted
            jobs.append(make_job(reward, s, str(run_path / folder / f"seed{s}"), f"{folder}/seed{s}",
                                 checked=name not in ("human", "sparse")))
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
    names = ["best"] if len(finalists) == 1 else [f"finalist {c.name}" for c in finalists]
    scored = [(i, stats[n].iqm) for i, n in enumerate(names) if n in stats]
    win = max(scored, key=lambda t: (t[1], -t[0]))[0] if scored else 0
    winner = finalists[win]
    finalist_rows = [{"round": c.round, "index": c.index, "name": c.name, "search_fitness": c.fitness_mean,
                      "search_steps": c.budget, "retrained": stats[n].to_dict() if n in stats else None,
                      "chosen": i == win} for i, (c, n) in enumerate(zip(finalists, names))]
    if names[win] in stats:
        stats["best"] = stats[names[win]]
    best = winner
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
        "finalists": finalist_rows,
        "selection": ("the only finalist" if len(finalists) == 1 else
                      f"the best of {len(finalists)} finalists by IQM over the {len(seeds)} final seeds "
                      "(a choice on several seeds; its re-trained figure still carries a mild selection bias)"),
        "hns": hns,
        "hns_basis": "IQM over seeds of each method",
        "hns_note": hns_note,
        "final_failures": failures,
        "candidates": [{"round": c.round, "index": c.index, "status": c.status, "fitness_mean": c.fitness_mean,
                        "steps": c.budget, "error": c.error} for c in history],
    }


__all__ = ["final_plans", "finalize"]
