"""Process wall of `rewardsmith check`, cold and cached, beside a floor measured in the same run.

Usage: python benchmarks/bench_check.py [--repeats 5] [--before TREE]

Each measurement is a fresh process. ``check`` runs ``python -m rewardsmith.cli check FILE --task
hopper-forward`` on the 4-component Hopper program of ``benchmarks/rewards``: "cold" with an empty
cache root (``REWARDSMITH_CACHE``: no compiled program, no sampled states), "cached" a second time
on the cache the cold run filled. The *floor* is a fresh interpreter that imports numba and
compiles (cold; empty cache) or loads from numba's cache (cached) the same arithmetic written as
one plain ``@njit(cache=True)`` function: what any numba-based check must pay at least.

``--before TREE`` also times the CLI from another source tree (e.g. ``git archive`` of an older
commit), alternating with this one in each repeat, so that before and after share the machine's
load. Printed: medians with [min, max], and the ratios check / floor of each repeat.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "rewards" / "hopper_four_terms.py"
TREE = HERE.parent
FLOOR_MODULE = '''
import numba
import numpy as np


@numba.njit(cache=True)
def compute_reward(x_velocity, torso_height, torso_angle, action):
    forward = 1.0 * x_velocity
    healthy = 1.0 if torso_height > 0.8 and abs(torso_angle) < 0.2 else 0.0
    ctrl = 0.001 * np.sum(action * action)
    upright = -0.1 * torso_angle * torso_angle
    return forward + healthy - ctrl + upright, (forward, healthy, -ctrl, upright)
'''
FLOOR_MAIN = "import numpy as np, floor_reward; floor_reward.compute_reward(1.0, 1.2, 0.0, np.zeros(3))"


def _env(cache: str, tree: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(REWARDSMITH_CACHE=cache, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def _timed(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr[-2000:]}")
    return wall


def floor_pair(tmp: str) -> tuple[float, float]:
    """The floor, cold then cached: import numba and compile / cache-load one plain ``@njit`` function."""
    folder = tempfile.mkdtemp(dir=tmp, prefix="floor")
    Path(folder, "floor_reward.py").write_text(FLOOR_MODULE)
    env = _env(os.path.join(folder, "rs"))
    env["PYTHONPATH"] = folder
    cmd = [sys.executable, "-c", FLOOR_MAIN]
    return _timed(cmd, env, folder), _timed(cmd, env, folder)


def check_pair(tmp: str, tree: Path) -> tuple[float, float]:
    """``rewardsmith check`` from ``tree``, cold (empty cache root) then cached (the same root)."""
    cache = tempfile.mkdtemp(dir=tmp, prefix="cache")
    env = _env(cache, tree)
    cmd = [sys.executable, "-m", "rewardsmith.cli", "check", str(PROGRAM), "--task", "hopper-forward"]
    return _timed(cmd, env, tmp), _timed(cmd, env, tmp)


def _fmt(values: list[float], unit: str = " s") -> str:
    return f"{np.median(values):.2f}{unit} [{min(values):.2f}, {max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", type=Path, default=None, help="another source tree to time alongside")
    args = parser.parse_args()
    trees = {"after": TREE, **({"before": args.before.resolve()} if args.before else {})}
    walls: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            fc, fw = floor_pair(tmp)
            walls.setdefault("floor cold", []).append(fc)
            walls.setdefault("floor cached", []).append(fw)
            for name, tree in trees.items():
                cc, cw = check_pair(tmp, tree)
                walls.setdefault(f"{name} cold", []).append(cc)
                walls.setdefault(f"{name} cached", []).append(cw)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()} python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {load:.2f}; {args.repeats} repeats: median [min, max]")
    for name, values in walls.items():
        print(f"{name:14s} {_fmt(values)}")
    for name in trees:
        for case in ("cold", "cached"):
            ratios = [c / f for c, f in zip(walls[f"{name} {case}"], walls[f"floor {case}"])]
            print(f"{name} {case} / floor {case}: {_fmt(ratios, 'x')}")


if __name__ == "__main__":
    main()
