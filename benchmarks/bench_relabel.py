"""Relabel throughput: a compiled program over 1,000,000 stored Hopper transitions vs plain Python.

Usage: python benchmarks/bench_relabel.py [--n 1000000] [--python-n 50000] [--repeats 3]

The states are Hopper reward states (14 floats: 11 variables incl. 3-vectors and the action).
The plain-Python baseline calls the same program's original Python function once per
transition over the same rows (timed on a ``--python-n`` subset and reported per transition, since
a million Python calls take a while); both produce the same numbers (checked). A third line times
``relabel`` over a full :class:`~rewardsmith.sources.Transitions` batch (previous states, flags).
Two more lines time the serial and the parallel kernel on their own (``relabel`` runs a batch of
``PARALLEL_MIN_ROWS`` rows or more on whichever was faster on recent large batches) and check
that they agree exactly.
For a "before" figure, run the script of an older tree with that tree first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numba
import numpy as np

from rewardsmith import get_task
from rewardsmith.program import load_program
from rewardsmith.program.compiler import PARALLEL_MIN_ROWS
from rewardsmith.sources import Transitions
from rewardsmith.state import split_state
from rewardsmith.wrappers import relabel

PROGRAM = '''
def compute_reward(x_velocity, torso_height, torso_angle, joint_velocities, action):
    forward = 1.0 * x_velocity
    healthy = 1.0 if torso_height > 0.8 and abs(torso_angle) < 0.2 else 0.0
    ctrl = 0.001 * np.sum(action * action)
    smooth = -0.01 * np.sum(np.abs(joint_velocities))
    return forward + healthy - ctrl + smooth, {"forward": forward, "healthy": healthy, "ctrl": -ctrl, "smooth": smooth}
'''


def _best_of(repeats: int, fn, *args):
    """The fastest of ``repeats`` timed calls of ``fn(*args)``, and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--python-n", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    task = get_task("hopper-forward")
    program = load_program(PROGRAM, task, run_probe=False)
    rng = np.random.default_rng(0)
    states = rng.normal(size=(args.n, task.state_size))
    relabel(program, states[:1000])  # warm
    program.compiled.parallel_batch()  # compile (or load) the parallel kernel before timing
    t_numba, (total, _) = _best_of(args.repeats, relabel, program, states)
    batch = Transitions.from_states(states, prev_state=np.roll(states, 1, axis=0),
                                    terminated=rng.random(args.n) < 0.001, truncated=np.zeros(args.n, bool))
    t_batch, (total_t, _) = _best_of(args.repeats, relabel, program, batch)
    np.testing.assert_array_equal(total_t, total)
    fn = program.python()
    parts = split_state(task, states[: args.python_n])
    cols = [parts[p] for p in program.params]
    t = time.perf_counter()
    ref = np.empty(args.python_n)
    for i in range(args.python_n):
        ref[i] = fn(*(c[i] for c in cols))[0]
    t_py = (time.perf_counter() - t) / args.python_n * args.n
    np.testing.assert_allclose(ref, total[: args.python_n], rtol=1e-12)
    print(f"machine: {platform.machine()} python {platform.python_version()}")
    print(f"compiled relabel : {args.n:,} transitions in {t_numba:.3f} s = {args.n / t_numba:,.0f} transitions/s")
    print(f"plain Python loop: {t_py:.1f} s for {args.n:,} (extrapolated from {args.python_n:,}) = "
          f"{args.n / t_py:,.0f} transitions/s")
    print(f"speed-up         : {t_py / t_numba:.0f}x")
    print(f"relabel over Transitions: {args.n / t_batch:,.0f} transitions/s")
    kernels = {}
    for name, parallel in (("serial", False), ("parallel", True)):
        counters = program.counters.copy()
        t_k, (total_k, comps_k) = _best_of(args.repeats, program.batch, states, None, parallel)
        kernels[name] = (total_k, comps_k, program.counters - counters)
        print(f"{name + ' kernel':16s} : {args.n / t_k:,.0f} transitions/s")
    for a, b in zip(kernels["serial"], kernels["parallel"]):
        np.testing.assert_array_equal(a, b)
    print(f"kernels agree exactly; rows copied first: {program.compiled.copies_rows}; "
          f"parallel from {PARALLEL_MIN_ROWS:,} rows, {numba.get_num_threads()} threads, "
          f"layer {numba.threading_layer()}; last measured by relabel (M rows/s): "
          f"{ {('parallel' if k else 'serial'): round(v / 1e6) for k, v in program.compiled._speed.items() if v} }")


if __name__ == "__main__":
    main()
