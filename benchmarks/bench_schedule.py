"""Successive halving vs the full schedule, and warm starts vs cold starts, on several tasks and seeds.

Usage:
    python benchmarks/bench_schedule.py --out runs/bench-schedule \\
        --tasks inverted-pendulum:20000 point-goal:20000 reacher:30000 --seeds 0 1 2 \\
        --arms full halving halving1 warm
    python benchmarks/bench_schedule.py --out runs/bench-schedule --report   # tables only

Each (task, seed, arm) is one ``synthesize`` run with the offline coder (``--iterations``,
``--samples``, no baselines, no early stop, ``--final-seeds`` fresh seeds): ``full`` trains every
candidate the whole budget (one finalist), ``halving`` uses ``--schedule halving`` (rungs at 1/4, 1/2
and the whole budget; two finalists, the better by IQM over the final seeds chosen), ``halving1``
is halving with one finalist (``--final-candidates 1``: what the second finalist costs), ``warm`` is
``full`` with ``--warm-start``. Arms of one (task, seed) run one after another, so the machine's
load affects them alike; every run takes ``/tmp/rewardsmith-bench.lock`` (one benchmark at a time on
a shared machine). A run directory that exists is resumed or, when finished, read: a killed sweep
continues where it stopped. The report gives, per task and arm: environment steps (search, final,
total) and wall time; the re-trained best's fitness (IQM over the benchmark seeds of each run's
IQM over its final seeds) with a 95% stratified-bootstrap interval; the compute ratio to ``full``
with an interval over seeds; and, for ``warm`` vs ``full``, the later rounds' search fitness at the
same per-candidate budget.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

LOCK = "/tmp/rewardsmith-bench.lock"


@contextlib.contextmanager
def bench_lock(path: str = LOCK) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def arm_config(arm: str, task: str, steps: int, seed: int, args: argparse.Namespace) -> Any:
    from rewardsmith.settings import SynthesisConfig

    return SynthesisConfig(task=task, coder="offline", iterations=args.iterations, samples=args.samples,
                           steps=steps, seed=seed, final_seeds=args.final_seeds, baselines=False,
                           stop_when_solved=False, n_envs=args.n_envs, workers=args.workers,
                           executor=args.executor, address=args.address,
                           schedule="halving" if arm.startswith("halving") else "full", warm_start=arm == "warm",
                           final_candidates=1 if arm == "halving1" else None)


def run_one(out: Path, arm: str, task: str, steps: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from rewardsmith.loop import synthesize

    run = out / f"{task}-{arm}-s{seed}"
    if (run / "summary.json").is_file():
        return json.loads((run / "summary.json").read_text())
    with bench_lock():
        t0 = time.perf_counter()
        if (run / "manifest.json").is_file():
            summary = synthesize(resume=run, log=lambda _line: None)
        else:
            summary = synthesize(arm_config(arm, task, steps, seed, args), out=run, log=lambda _line: None)
        print(f"{task} {arm} seed {seed}: {time.perf_counter() - t0:.0f} s, re-trained "
              f"{summary['best']['fitness_iqm']}, steps {summary['compute']['total_steps']:,}", flush=True)
    return summary


def round_fitness(run: Path, round_idx: int) -> list[float]:
    data = json.loads((run / "rounds" / f"r{round_idx:02d}" / "results.json").read_text())
    return [c["fitness_mean"] for c in data if c.get("fitness_mean") is not None]


def report(out: Path, tasks: list[tuple[str, int]], seeds: list[int], arms: list[str]) -> str:
    from rewardsmith.stats import bootstrap_ci, summarize

    lines = []
    rows = []
    for task, _steps in tasks:
        for arm in arms:
            for seed in seeds:
                run = out / f"{task}-{arm}-s{seed}"
                if not (run / "summary.json").is_file():
                    continue
                s = json.loads((run / "summary.json").read_text())
                rows.append({"task": task, "arm": arm, "seed": seed, "retrained": s["best"]["fitness_iqm"],
                             "search": s["best"]["search_fitness"], **s["compute"], "wall_s": s["wall_s"],
                             "later_rounds": [f for r in range(1, 9) if (run / "rounds" / f"r{r:02d}").is_dir()
                                              for f in round_fitness(run, r)]})
    (out / "runs.json").write_text(json.dumps(rows, indent=1))
    lines.append("| task | arm | runs | search steps | total steps | wall s | total vs full | "
                 "re-trained best (IQM [95% CI]) | search fitness of the best |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---|---|")
    for task, _steps in tasks:
        base = {r["seed"]: r for r in rows if r["task"] == task and r["arm"] == "full"}
        for arm in arms:
            mine = [r for r in rows if r["task"] == task and r["arm"] == arm]
            if not mine:
                continue
            fit = summarize([r["retrained"] for r in mine if r["retrained"] is not None])
            search = summarize([r["search"] for r in mine if r["search"] is not None])
            ratios = [r["total_steps"] / base[r["seed"]]["total_steps"] for r in mine if r["seed"] in base]
            ratio = "-"
            if ratios and arm != "full":
                ci = bootstrap_ci(ratios, statistic=np.mean)
                ratio = f"{np.mean(ratios):.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
            lines.append(f"| {task} | {arm} | {len(mine)} | {np.mean([r['search_steps'] for r in mine]):,.0f} | "
                         f"{np.mean([r['total_steps'] for r in mine]):,.0f} | "
                         f"{np.mean([r['wall_s'] for r in mine]):.0f} | {ratio} | "
                         f"{fit.iqm:.4g} [{fit.ci_low:.4g}, {fit.ci_high:.4g}] | "
                         f"{search.iqm:.4g} [{search.ci_low:.4g}, {search.ci_high:.4g}] |")
    if "warm" in arms:
        lines.append("")
        lines.append("Later rounds (round 2 on), every trained candidate's search fitness at the same "
                     "per-candidate budget, cold (`full`) vs `warm` (IQM [95% CI] over candidates x seeds):")
        lines.append("")
        lines.append("| task | cold | warm |")
        lines.append("|---|---|---|")
        for task, _steps in tasks:
            cells = []
            for arm in ("full", "warm"):
                vals = [f for r in rows if r["task"] == task and r["arm"] == arm for f in r["later_rounds"]]
                s = summarize(vals) if vals else None
                cells.append(f"{s.iqm:.4g} [{s.ci_low:.4g}, {s.ci_high:.4g}] (n={s.n})" if s else "-")
            lines.append(f"| {task} | {cells[0]} | {cells[1]} |")
    lines.append("")
    lines.append(f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-schedule"))
    parser.add_argument("--tasks", nargs="+", default=["inverted-pendulum:20000", "point-goal:20000", "reacher:30000"],
                        help="TASK:STEPS per candidate")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["full", "halving", "halving1", "warm"])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--final-seeds", type=int, default=3)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", default="local", help="local or ray (the loop's executors)")
    parser.add_argument("--address", default=None, help="Ray cluster to join (with --executor ray)")
    parser.add_argument("--report", action="store_true", help="only print the tables of the finished runs")
    args = parser.parse_args()
    tasks = [(t.split(":")[0], int(t.split(":")[1])) for t in args.tasks]
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for seed in args.seeds:
            for task, steps in tasks:
                for arm in args.arms:
                    run_one(args.out, arm, task, steps, seed, args)
    print(report(args.out, tasks, args.seeds, args.arms))


if __name__ == "__main__":
    main()
