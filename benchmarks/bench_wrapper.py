"""Overhead of the rewardsmith VecEnv wrapper versus the bare env (Hopper, 8 envs, same run).

Usage: python benchmarks/bench_wrapper.py [--steps 2000] [--rounds 5] [--n-envs 8]

Both variants step a DummyVecEnv of Hopper-v5 with the same pre-drawn random actions; rounds
alternate bare / wrapped so machine noise hits both alike. Reports the median per-step time of
each and their ratio. The wrapped variant runs TaskWrapper (reads 8 variables, tracks fitness) in
every env plus RewardVecEnv with a compiled 4-component program as a reward source (one batch call
per step over the envs' transitions: each env's previous state, actions, states, terminated and
truncated).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from rewardsmith import get_task
from rewardsmith.program import load_program
from rewardsmith.wrappers import RewardVecEnv, TaskWrapper

PROGRAM = (Path(__file__).parent / "rewards" / "hopper_four_terms.py").read_text()


def run(venv, actions: np.ndarray) -> float:
    venv.seed(0)
    venv.reset()
    t = time.perf_counter()
    for a in actions:
        venv.step(a)
    return (time.perf_counter() - t) / len(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-envs", type=int, default=8)
    args = parser.parse_args()
    task = get_task("hopper-forward")
    program = load_program(PROGRAM, task)
    bare = DummyVecEnv([task.make_env for _ in range(args.n_envs)])
    wrapped = RewardVecEnv(DummyVecEnv([lambda: TaskWrapper(task.make_env(), task) for _ in range(args.n_envs)]),
                           program)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(args.steps, args.n_envs, 3)).astype(np.float32)
    run(bare, actions[:200])
    run(wrapped, actions[:200])
    t_bare, t_wrapped = [], []
    for _ in range(args.rounds):
        t_bare.append(run(bare, actions))
        t_wrapped.append(run(wrapped, actions))
    b, w = float(np.median(t_bare)), float(np.median(t_wrapped))
    ratios = np.array(t_wrapped) / np.array(t_bare)
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"bare    : {b * 1e6:8.1f} us/step ({args.n_envs} envs)")
    print(f"wrapped : {w * 1e6:8.1f} us/step")
    print(f"ratio   : {w / b:.3f}x (per-round ratios {np.round(ratios, 3).tolist()})")
    print(f"nonfinite replaced: {wrapped.nonfinite}")


if __name__ == "__main__":
    main()
