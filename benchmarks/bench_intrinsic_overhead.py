"""What each exploration bonus costs per environment step, measured side by side.

``python benchmarks/bench_intrinsic_overhead.py [--task mountain-car] [--steps 16384] [--rounds 3]``
trains PPO (the Trainer's defaults: 8 envs, VecNormalize) on the task's sparse reward for
``--steps`` steps with no bonus and with each bonus, one training at a time in this process, in
``--rounds`` rounds whose order is shuffled per round, so machine noise hits every method alike.
Each training's wall time covers env stepping, the bonus (recording, compute, model updates) and
PPO's own updates; the table gives the median time per env step and its ratio to no bonus (the
median of the per-round ratios, with their min-max). Model building is not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import numpy as np

BONUSES = ["none", "rnd", "icm", "simhash", "episodic", "e3b", "ngu", "oni"]


def one(task: str, bonus: str, steps: int, seed: int) -> float:
    from rewardsmith.trainer import Trainer

    with Trainer(task, "sparse", seed=seed, budget=steps, intrinsic=None if bonus == "none" else bonus) as t:
        t0 = time.perf_counter()
        t.learn(steps)
        return (time.perf_counter() - t0) / t.num_timesteps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="mountain-car")
    ap.add_argument("--bonuses", nargs="+", default=BONUSES)
    ap.add_argument("--steps", type=int, default=16_384)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    one(args.task, "none", 2048, 0)  # warm-up: imports, the sparse program's compile cache
    times: dict[str, list[float]] = {b: [] for b in args.bonuses}
    rng = random.Random(0)
    for r in range(args.rounds):
        order = list(args.bonuses)
        rng.shuffle(order)
        for b in order:
            times[b].append(one(args.task, b, args.steps, r))
    print(f"{args.task}, {args.steps} steps x {args.rounds} rounds; {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| bonus | us per env step (median) | x no bonus (median [min, max] over rounds) |\n|---|---:|---:|")
    base = times.get("none")
    for b, ts in times.items():
        ratio = ""
        if base and b != "none":
            rs = [t / n for t, n in zip(ts, base)]
            ratio = f"{np.median(rs):.2f} [{min(rs):.2f}, {max(rs):.2f}]"
        print(f"| {b} | {1e6 * float(np.median(ts)):.0f} | {ratio or '1'} |")


if __name__ == "__main__":
    main()
