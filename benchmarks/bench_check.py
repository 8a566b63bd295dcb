"""Cost of `check` for one program (validate + compile + probe), cold and cached.

Usage: python benchmarks/bench_check.py [--repeats 3]

Each measurement is a fresh Python process (as a CLI call would be) that imports rewardsmith and
checks one 4-component Hopper program. "cold" uses an empty compile cache; "cached" reuses the
cache the cold run filled (numba loads machine code instead of compiling); "memo" is a second
check of the same program in the same process. Reported: the library's own per-stage timings
(median over repeats) and the process wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r'''
import json, sys, time
from rewardsmith.program import check_program
from rewardsmith.program.probe import sample_states
from rewardsmith import get_task
src = open(sys.argv[1]).read()
task = get_task("hopper-forward")
states = sample_states(task)
r1 = check_program(src, task, states=states)
t = time.perf_counter(); r2 = check_program(src, task, states=states); memo = time.perf_counter() - t
assert r1.ok and r2.ok, r1.error
print(json.dumps({"timings": r1.timings, "memo": r2.timings}))
'''
PROGRAM = (Path(__file__).parent / "rewards" / "hopper_four_terms.py").read_text()


def once(path: str, cache: str) -> tuple[dict, float]:
    env = {**os.environ, "REWARDSMITH_CACHE": cache}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, path], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {"cold": [], "cached": [], "memo": []}
    walls: dict[str, list[float]] = {"cold": [], "cached": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "reward.py")
        with open(path, "w") as fh:
            fh.write(PROGRAM)
        for i in range(args.repeats):
            cache = os.path.join(tmp, f"cache{i}")
            cold, wall_cold = once(path, cache)
            cached, wall_cached = once(path, cache)
            rows["cold"].append(cold["timings"])
            rows["cached"].append(cached["timings"])
            rows["memo"].append(cached["memo"])
            walls["cold"].append(wall_cold)
            walls["cached"].append(wall_cached)
    print(f"machine: {platform.machine()} python {platform.python_version()}, {args.repeats} repeats (medians)")
    print(f"{'case':8s} {'validate':>9s} {'compile':>9s} {'probe':>9s} {'process wall':>13s}")
    for case in ("cold", "cached", "memo"):
        med = {k: float(np.median([r.get(k, 0.0) for r in rows[case]])) for k in ("validate", "compile", "probe")}
        wall = f"{np.median(walls[case]):.2f} s" if case in walls else "-"
        print(f"{case:8s} {med['validate'] * 1e3:7.1f}ms {med['compile'] * 1e3:7.1f}ms {med['probe'] * 1e3:7.0f}ms "
              f"{wall:>13s}")


if __name__ == "__main__":
    main()
