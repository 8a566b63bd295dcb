"""Exploration bonuses on sparse tasks: PPO with no bonus vs each bonus, several seeds.

``python benchmarks/bench_intrinsic.py [--tasks mountain-car point-maze] [--bonuses none rnd ...]
[--seeds 5] [--steps 100000] [--jobs 2] [--out benchmarks/results/intrinsic.jsonl]`` trains every
(task, bonus, seed) through :class:`rewardsmith.trainer.Trainer` on the task's SPARSE reward (the
success indicator; the bonus is the only other signal) and appends one JSON row per run to
``--out``; rows already there are skipped, so a killed sweep resumes. ``--report`` (alone, or after
the runs) aggregates the rows into a markdown table:

* **first success**: the env step at which a training episode first succeeded (runs that never
  succeeded count as the budget, i.e. censored; the table also says how many seeds succeeded);
* **late success**: the share of training episodes that succeeded in the last 20% of the steps;
* **eval success**: the deterministic policy's success rate over 10 episodes after training;
* **coverage**: the share of a 20 x 20 grid over two state variables visited during training
  (MountainCar: position x velocity over their full ranges; the maze: x, y over the free
  space's bounding box, whose middle wall cells cannot be visited);
* **us/step**: wall time per env step, and its ratio to no bonus measured in the same sweep.

Statistics are rliable's (``rewardsmith.stats``): IQM over seeds with 95% stratified-bootstrap
intervals, and the probability that a bonus's late success beats no bonus's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

GRIDS: dict[str, tuple[tuple[str, float, float], tuple[str, float, float]]] = {
    # (variable, low, high) per grid axis; the variable's first element is used
    "mountain-car": (("position", -1.2, 0.6), ("velocity", -0.07, 0.07)),
    "point-maze": (("position", -0.8, 0.8), ("position@1", -0.6, 0.6)),
}
GRID = 20


def _make_tracker(task: Any) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    (v0, lo0, hi0), (v1, lo1, hi1) = GRIDS[task.name]
    slices = task.slices()

    def index(name: str) -> int:
        var, _, k = name.partition("@")
        return slices[var].start + int(k or 0)

    i0, i1 = index(v0), index(v1)

    class Tracker(BaseCallback):
        """Records training-episode successes (with the step) and the grid cells visited."""

        def __init__(self) -> None:
            super().__init__()
            self.visited = np.zeros((GRID, GRID), dtype=bool)
            self.episodes: list[tuple[int, bool]] = []
            self.reward_env: Any = None

        def _on_training_start(self) -> None:
            from rewardsmith.callbacks import find_wrapper
            from rewardsmith.wrappers import RewardVecEnv

            self.reward_env = find_wrapper(self.training_env, RewardVecEnv)

        def _on_step(self) -> bool:
            states = self.reward_env.last_transitions.state  # (n_envs, S), terminal states at episode ends
            a = np.clip(((states[:, i0] - lo0) / (hi0 - lo0) * GRID).astype(int), 0, GRID - 1)
            b = np.clip(((states[:, i1] - lo1) / (hi1 - lo1) * GRID).astype(int), 0, GRID - 1)
            self.visited[a, b] = True
            for info in self.locals["infos"]:
                if info.get("episode_success") is not None:
                    self.episodes.append((int(self.num_timesteps), bool(info["episode_success"])))
            return True

    return Tracker()


def run_one(task_name: str, bonus: str, seed: int, steps: int, coef: float) -> dict[str, Any]:
    """Train one run and measure it (one process, one thread)."""
    import torch

    from rewardsmith import get_task
    from rewardsmith.trainer import Trainer

    torch.set_num_threads(1)
    task = get_task(task_name)
    tracker = _make_tracker(task)
    t0 = time.perf_counter()
    trainer = Trainer(task, "sparse", seed=seed, budget=steps, intrinsic=None if bonus == "none" else bonus,
                      intrinsic_coef=None if bonus == "none" else coef, callbacks=[tracker])
    trainer.learn(steps)
    wall = time.perf_counter() - t0
    n = trainer.num_timesteps
    evals = trainer.evaluate(episodes=10, seed=seed + 1000)
    threshold = task.fitness.threshold
    trainer.close()
    firsts = [s for s, ok in tracker.episodes if ok]
    late = [ok for s, ok in tracker.episodes if s > 0.8 * n]
    return {"task": task.ref, "bonus": bonus, "seed": seed, "steps": n, "coef": None if bonus == "none" else coef,
            "first_success": firsts[0] if firsts else None, "successes": len(firsts),
            "episodes": len(tracker.episodes), "late_success": float(np.mean(late)) if late else 0.0,
            "eval_success": float(np.mean([f >= threshold for f in evals])),
            "coverage": float(tracker.visited.mean()), "wall_s": wall, "us_per_step": 1e6 * wall / n}


def _done(out: Path) -> set[tuple]:
    if not out.is_file():
        return set()
    keys = set()
    for line in out.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        keys.add((r["task"].split("@")[0], r["bonus"], r["seed"]))
    return keys


def sweep(tasks: list[str], bonuses: list[str], seeds: int, steps: int, coef: float, jobs: int, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(out)
    todo = [(t, b, s) for t in tasks for s in range(seeds) for b in bonuses if (t, b, s) not in done]
    print(f"{len(todo)} runs to go ({len(done)} already in {out})", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_one, t, b, s, steps, coef): (t, b, s) for t, b, s in todo}
        for k, fut in enumerate(futures, 1):
            t, b, s = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # one failed run is reported, the sweep goes on
                print(f"[{k}/{len(todo)}] {t} {b} seed {s}: FAILED: {exc!r}", file=sys.stderr)
                continue
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[{k}/{len(todo)}] {t} {b} seed {s}: first success {row['first_success']}, "
                  f"late {row['late_success']:.2f}, eval {row['eval_success']:.2f}, coverage "
                  f"{row['coverage']:.2f}, {row['us_per_step']:.0f} us/step", file=sys.stderr)


def report(out: Path) -> str:
    from rewardsmith.stats import bootstrap_ci, iqm, probability_of_improvement

    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    sources = [out]
    sibling = out.with_name("intrinsic_rllte.jsonl")  # benchmarks/bench_rllte.py's rows (rllte's RND)
    if out.name == "intrinsic.jsonl" and sibling.is_file():  # the main sweep's table only
        rows += [json.loads(line) for line in sibling.read_text().splitlines() if line.strip()]
        sources.append(sibling)
    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; rows from "
             f"{' and '.join(map(str, sources))}.", "",
             "| task | bonus | seeds | solved seeds | first success (IQM, censored at budget) | late success (IQM) "
             "| eval success (IQM) | coverage (IQM) | P(late > none) | us/step (x none) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def est(values: list[float], fmt: str) -> str:
        lo, hi = bootstrap_ci(values)
        return f"{format(iqm(values), fmt)} [{format(lo, fmt)}, {format(hi, fmt)}]"

    for task in sorted({r["task"] for r in rows}):
        by: dict[str, list[dict]] = {}
        for r in rows:
            if r["task"] == task:
                by.setdefault(r["bonus"], []).append(r)
        base = by.get("none")
        base_us = float(np.median([r["us_per_step"] for r in base])) if base else None
        for bonus in sorted(by, key=lambda b: (b != "none", b)):
            rs = sorted(by[bonus], key=lambda r: r["seed"])
            first = [r["first_success"] if r["first_success"] is not None else r["steps"] for r in rs]
            late = [r["late_success"] for r in rs]
            poi = "-"
            if base and bonus != "none":
                p = probability_of_improvement(np.array(late)[:, None], np.array([r["late_success"] for r in base])[:, None])
                poi = f"{p.value:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}]"
            us = float(np.median([r["us_per_step"] for r in rs]))
            ratio = f" (x{us / base_us:.2f})" if base_us else ""
            lines.append(f"| {task} | {bonus} | {len(rs)} | {sum(r['first_success'] is not None for r in rs)} "
                         f"| {est(first, '.0f')} | {est(late, '.2f')} | {est([r['eval_success'] for r in rs], '.2f')} "
                         f"| {est([r['coverage'] for r in rs], '.2f')} | {poi} | {us:.0f}{ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["mountain-car", "point-maze"])
    ap.add_argument("--bonuses", nargs="+", default=["none", "rnd", "icm", "simhash", "episodic", "e3b", "ngu"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--coef", type=float, default=0.01)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/intrinsic.jsonl"))
    ap.add_argument("--report", action="store_true", help="only aggregate the rows in --out")
    args = ap.parse_args(argv)
    if not args.report:
        sweep(args.tasks, args.bonuses, args.seeds, args.steps, args.coef, args.jobs, args.out)
    print(report(args.out))


if __name__ == "__main__":
    main()
