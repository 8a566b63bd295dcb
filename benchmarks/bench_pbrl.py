"""End-to-end PbRL: true return vs number of queries, beside agents trained on the true reward.

``python benchmarks/bench_pbrl.py [--tasks pendulum:100000 reacher:50000] [--queries 50 200 500]
[--seeds 3] [--algo ppo] [--out benchmarks/results/pbrl.jsonl] [--report]``

For every (task, arm, seed): arm ``true`` trains on the env's own reward through
:class:`rewardsmith.trainer.Trainer`; arm ``pbrl-Q`` runs :func:`rewardsmith.preference.pbrl.prefs`
with a scripted oracle teacher and ``Q`` queries (disagreement selection, 10 updates), everything
else equal (algorithm, steps, seed, envs). One JSON row per run is appended to ``--out``; rows
already there are skipped, so a killed sweep resumes. The row keeps the per-iteration curve
(queries so far -> the deterministic policy's true fitness), from which the report takes the
queries-to-threshold.

The report normalises each run's final true fitness as ``(R - R_random) / (R_true - R_random)``
(``R_random`` = a uniform random policy's mean fitness over 20 episodes, ``R_true`` = the IQM of the
true-reward arm), and gives IQMs with rliable's 95% stratified-bootstrap intervals over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def _done(out: Path) -> set[tuple[str, str, int]]:
    if not out.is_file():
        return set()
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {(r["task"], r["arm"], r["seed"]) for r in rows}


def run_true(task: str, steps: int, seed: int, algo: str | None) -> dict[str, Any]:
    from rewardsmith.trainer import Trainer

    t0 = time.perf_counter()
    n_envs = 4 if (algo or "ppo") == "ppo" else 1
    with Trainer(task, "builtin", algo=algo, seed=seed, n_envs=n_envs, budget=steps, device="cpu") as tr:
        tr.learn(steps)
        fit = tr.evaluate()
    return {"final_fitness": float(np.mean(fit)), "wall_s": round(time.perf_counter() - t0, 1), "curve": []}


def run_pbrl(task: str, steps: int, seed: int, algo: str | None, queries: int, selection: str) -> dict[str, Any]:
    from rewardsmith.preference.pbrl import PrefsConfig, prefs

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-pbrl-") as tmp:
        s = prefs(PrefsConfig(task=task, queries=queries, steps=steps, algo=algo, seed=seed, selection=selection),
                  out=Path(tmp) / "run")
    curve = [{"queries": r["queries_total"], "steps": r["steps"], "fitness": r["fitness_mean"],
              "reward_corr": r.get("reward_corr")} for r in s["progress"]]
    return {"final_fitness": s["final_fitness_mean"], "wall_s": round(time.perf_counter() - t0, 1), "curve": curve}


def random_fitness(task_name: str, episodes: int = 20) -> float:
    from rewardsmith.preference.collect import collect
    from rewardsmith.tasks import get_task

    return float(np.mean([r.fitness for r in collect(get_task(task_name), None, episodes, seed=12345)]))


def report(out: Path) -> str:
    from rewardsmith.stats import aggregate, iqm
    from rewardsmith.tasks import get_task

    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        spec = get_task(task)
        threshold = spec.fitness.threshold
        trs = [r for r in rows if r["task"] == task]
        true = [r["final_fitness"] for r in trs if r["arm"] == "true"]
        if not true:
            continue
        r_rand, r_true = random_fitness(task), iqm(true)
        lines += [f"**{task}** ({trs[0]['algo']}, {trs[0]['steps']:,} steps; random policy {r_rand:.4g}, "
                  f"true-reward IQM {r_true:.4g}; threshold {threshold})", "",
                  "| arm | seeds | final true fitness IQM [95% CI] | normalised IQM [95% CI] | "
                  "final >= threshold | queries when an update's evaluation first reached it (median) | wall s |",
                  "|---|---|---|---|---|---|---|"]
        arms = sorted(dict.fromkeys(r["arm"] for r in trs), key=lambda a: (a != "true", int(a.split("-")[-1])
                                                                              if a != "true" else 0))
        for arm in arms:
            rs = sorted((r for r in trs if r["arm"] == arm), key=lambda r: r["seed"])
            fit = np.array([r["final_fitness"] for r in rs])
            norm = (fit - r_rand) / (r_true - r_rand)
            est = aggregate({"f": fit[:, None], "n": norm[:, None]}, reps=2000)
            f, n = est["f"]["iqm"], est["n"]["iqm"]
            reached = "-" if threshold is None else f"{int(sum(x >= threshold for x in fit))}/{len(rs)}"
            if arm == "true" or threshold is None:
                qtt = "-"
            else:  # the answered queries when an update's deterministic evaluation first reached the threshold
                hit = [q for q in (next((c["queries"] for c in r["curve"] if c["fitness"] >= threshold), None)
                                   for r in rs) if q is not None]
                qtt = f"{int(np.median(hit))} ({len(hit)}/{len(rs)} runs)" if hit else f"never (0/{len(rs)})"
            lines.append(f"| {arm} | {len(rs)} | {f} | {n} | {reached} | {qtt} | "
                         f"{np.mean([r['wall_s'] for r in rs]):.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["pendulum:100000", "reacher:50000"])
    ap.add_argument("--queries", nargs="+", type=int, default=[50, 200, 500])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--algo", default=None)
    ap.add_argument("--selection", default="disagreement")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/pbrl.jsonl"))
    ap.add_argument("--report", action="store_true", help="only print the report of the rows in --out")
    args = ap.parse_args(argv)
    if args.report:
        print(report(args.out))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(args.out)
    for spec in args.tasks:
        task, _, steps_s = spec.partition(":")
        steps = int(steps_s or 100_000)
        for seed in range(args.seeds):
            for arm in ["true", *[f"pbrl-{q}" for q in args.queries]]:
                if (task, arm, seed) in done:
                    continue
                if arm == "true":
                    res = run_true(task, steps, seed, args.algo)
                else:
                    res = run_pbrl(task, steps, seed, args.algo, int(arm.split("-")[1]), args.selection)
                row = {"task": task, "arm": arm, "seed": seed, "steps": steps, "algo": args.algo or "ppo",
                       "selection": args.selection, **res, "machine": f"{platform.node()} {os.cpu_count()} cpu",
                       "python": sys.version.split()[0], "t": time.strftime("%Y-%m-%d %H:%M")}
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{task} {arm} seed {seed}: final true fitness {res['final_fitness']:.4g} "
                      f"({res['wall_s']}s)", flush=True)
    print(report(args.out))


if __name__ == "__main__":
    main()
