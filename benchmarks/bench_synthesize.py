"""The reward-coder loop on one task: best reward vs the human (built-in) and sparse baselines.

Usage:
    python benchmarks/bench_synthesize.py --task hopper-forward --steps 50000 --iterations 2 --samples 4

Runs ``rewardsmith synthesize`` (offline coder unless ``--coder`` says otherwise) and prints one
markdown row for benchmarks/RESULTS.md: the best program's fitness re-trained on ``--final-seeds``
fresh seeds and both baselines at the same budget and seeds (IQM [95% bootstrap CI], mean ± std),
the human-normalised score, and the wall time. The run directory is kept under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from rewardsmith.loop import SynthesisConfig, synthesize


def fmt(stats: dict | None) -> str:
    if not stats:
        return "-"
    return (f"{stats['iqm']:.3g} [{stats['ci_low']:.3g}, {stats['ci_high']:.3g}] "
            f"({stats['mean']:.3g} ± {stats['std']:.2g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--coder", default="offline")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--final-seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    config = SynthesisConfig(task=args.task, coder=args.coder, iterations=args.iterations, samples=args.samples,
                             steps=args.steps, final_seeds=args.final_seeds, seed=args.seed,
                             **({"workers": args.workers} if args.workers else {}))
    out = Path(args.out or f"runs/bench-{args.task}-s{args.seed}")
    summary = synthesize(config, out=out)
    best = {"iqm": summary["best"]["fitness_iqm"], "ci_low": summary["best"]["ci95"][0],
            "ci_high": summary["best"]["ci95"][1], "mean": summary["best"]["fitness_mean"],
            "std": summary["best"]["fitness_std"]}
    hns = "-" if summary["hns"] is None else f"{summary['hns']:.2f}"
    print(json.dumps({k: v for k, v in summary.items() if k != "candidates"}, indent=1, default=str))
    print(f"machine: {platform.machine()} python {platform.python_version()}")
    print("| task | coder | budget | best (IQM [CI], mean ± std) | human | sparse | HNS | wall |")
    print(f"| {args.task} | {summary['coder']} | {args.iterations}x{args.samples} x {summary['steps_per_candidate']:,}"
          f" steps, seeds {summary['seeds']} | {fmt(best)} | {fmt(summary['baselines']['human'])} | "
          f"{fmt(summary['baselines']['sparse'])} | {hns} | {summary['wall_s'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
