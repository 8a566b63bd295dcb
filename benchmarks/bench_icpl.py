"""ICPL rounds-to-threshold: the reward-coder loop selecting by a scripted oracle's preferences.

Usage:
    flock /tmp/rewardsmith-bench.lock python benchmarks/bench_icpl.py --task pendulum --seeds 5 --rounds 5

For each seed, runs the rounds of ``rewardsmith synthesize --select preference --teacher scripted``
(offline coder unless ``--coder``): each round the coder writes ``--samples`` programs, each trains
``--steps`` steps, the oracle ranks their evaluation rollouts pairwise by true fitness and the coder
gets the ranking (never the fitness). After each round one row goes to ``--results``
(``benchmarks/results/icpl.jsonl``, appended): the fitness of the teacher's choice so far (its search
fitness: one training seed, the task's evaluation episodes), the best true fitness of any candidate so
far, the teacher's comparisons and the environment steps spent so far. A last row per seed
(``"row": "seed"``) gives the first round (1-based) at which the choice reached ``--threshold``
(default: the task's success threshold; Pendulum-v1: -200), or null. The final re-training of
``synthesize`` is skipped: what is measured is how fast the search gets there.

Set beside ``bench_pbrl`` (PbRL queries-to-threshold on the same task): ICPL spends comparisons
of whole rollouts between reward programs, PbRL comparisons of segments to fit a reward model.
Run directories are kept under ``--out``, so a killed benchmark resumes where it stopped (finished
trainings and every saved label are reused; its rows are appended again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.loop import RunDir, SynthesisConfig, Synthesizer
from rewardsmith.tasks import get_task


@dataclass
class Args:
    """Settings of the benchmark (each is a ``--flag``)."""

    task: str = "pendulum"  # the task (name or name@version)
    seeds: int = 5  # seeds 0 .. seeds-1 (the loop's base seed)
    rounds: int = 5  # rounds of the loop per seed, at most
    samples: int = 4  # programs per round
    steps: int | None = None  # training steps per candidate (default: the task's budget)
    threshold: float | None = None  # the fitness to reach (default: the task's success threshold)
    coder: str = "offline"  # the reward coder
    workers: int | None = None  # parallel trainings (default: the CPU cores)
    eval_episodes: int | None = None  # evaluation episodes per candidate (default: the task's)
    stop_at_threshold: bool = True  # stop a seed once the choice reaches the threshold
    out: str = "runs/bench-icpl"  # run directories: <out>/<task>-s<seed>
    results: str = "benchmarks/results/icpl.jsonl"  # where rows are appended


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).split()[0]  # "int", "int | None", "bool", ...
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type={"int": int, "float": float, "str": str}[kind], default=f.default)
    return Args(**vars(parser.parse_args()))


def queries_asked(run_path: Path, rounds: int) -> int:
    """The teacher's comparisons so far (round robins plus each top against the previous choice)."""
    total = 0
    for r in range(rounds):
        path = run_path / "rounds" / f"r{r:02d}" / "ranking.json"
        if path.is_file():
            data = json.loads(path.read_text())
            total += len(data.get("labels", [])) + (1 if data.get("versus") else 0)
    return total


def run_seed(args: Args, seed: int, threshold: float) -> list[dict[str, Any]]:
    config = SynthesisConfig(task=args.task, coder=args.coder, iterations=args.rounds, samples=args.samples,
                             steps=args.steps, seed=seed, select="preference", teacher="scripted",
                             baselines=False, final_seeds=1,
                             **({"workers": args.workers} if args.workers else {}),
                             **({"eval_episodes": args.eval_episodes} if args.eval_episodes else {}))
    run = RunDir(Path(args.out) / f"{get_task(args.task).name}-s{seed}")
    loop = Synthesizer(config, run)
    rows, last, reached = [], [], None
    t0 = time.perf_counter()
    try:
        for r in range(args.rounds):
            last = loop.step(r, last)
            chosen = loop.best()
            trained = [c.fitness_mean for c in loop.history if c.trained]
            best_any = max(trained) if trained else None
            chosen_fit = None if chosen is None else chosen.fitness_mean
            if reached is None and chosen_fit is not None and chosen_fit >= threshold:
                reached = r + 1
            rows.append({"row": "round", "bench": "icpl", "task": args.task, "seed": seed, "round": r + 1,
                         "samples": args.samples, "steps": loop.steps, "coder": loop.coder.name,
                         "teacher": "scripted-oracle", "chosen": None if chosen is None else chosen.name,
                         "chosen_fitness": chosen_fit, "best_so_far_fitness": best_any,
                         "queries": queries_asked(run.path, r + 1),
                         "env_steps": int(sum(c.budget or 0 for c in loop.history)),
                         "threshold": threshold, "reached": reached is not None,
                         "wall_s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]))
            if reached is not None and args.stop_at_threshold:
                break
    finally:
        loop.executor.close()
    first_any = next((row["round"] for row in rows if row["best_so_far_fitness"] is not None
                      and row["best_so_far_fitness"] >= threshold), None)
    rows.append({"row": "seed", "bench": "icpl", "task": args.task, "seed": seed, "threshold": threshold,
                 "rounds_run": len(rows), "round_to_threshold": reached, "round_to_threshold_any": first_any,
                 "queries_to_threshold": rows[reached - 1]["queries"] if reached else None,
                 "env_steps_to_threshold": rows[reached - 1]["env_steps"] if reached else None,
                 "final_chosen_fitness": rows[-1]["chosen_fitness"] if rows else None,
                 "machine": platform.machine(), "python": platform.python_version()})
    return rows


def main() -> None:
    args = parse_args()
    task = get_task(args.task)
    threshold = args.threshold if args.threshold is not None else task.fitness.threshold
    if threshold is None:
        raise SystemExit(f"task {task.name!r} has no success threshold: pass --threshold")
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    per_seed = []
    for seed in range(args.seeds):
        rows = run_seed(args, seed, float(threshold))
        with results.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        per_seed.append(rows[-1])
    hit = [s["round_to_threshold"] for s in per_seed if s["round_to_threshold"] is not None]
    print(f"| task | seeds | rounds x samples x steps | reached | median rounds to {threshold:g} | "
          "median queries to it |")
    queries = [s["queries_to_threshold"] for s in per_seed if s["queries_to_threshold"] is not None]
    print(f"| {task.name} | {args.seeds} | {args.rounds} x {args.samples} x {args.steps or task.default_steps:,}"
          f" | {len(hit)}/{args.seeds} | {np.median(hit) if hit else '-'} | {np.median(queries) if queries else '-'} |")


if __name__ == "__main__":
    main()
