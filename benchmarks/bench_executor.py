"""Executors: the local executor's parallel efficiency (1 vs N workers) and the Ray executor's overhead.

The same batch of PPO trainings (distinct seeds, the env's own reward, nothing reused) runs

* ``local``: on a :class:`~rewardsmith.executor.LocalExecutor` of 1 worker, then of ``--workers``
  workers: the wall-time ratio is the parallel speed-up (ideal: the worker count);
* ``ray``: on a :class:`~rewardsmith.ray_executor.RayExecutor` over a local Ray instance of
  ``--workers`` CPUs and on a local executor of as many workers, alternately: Ray's start-up is
  timed apart, and the overhead per candidate is ``(ray wall - local wall) / jobs``.

Batches alternate (``--rounds`` pairs) so that a change in the machine's load hits both sides.

Each executor first trains one tiny job per worker (imports paid, workers warm), so the timed
batch measures running trainings, not starting Python. Run under ``flock`` so that no two
benchmarks share the machine::

    flock /tmp/rewardsmith-bench.lock python benchmarks/bench_executor.py --part local
    flock /tmp/rewardsmith-bench.lock python benchmarks/bench_executor.py --part ray
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

from rewardsmith.executor import LocalExecutor, TrainJob
from rewardsmith.tasks import get_task


def jobs(root: Path, label: str, n: int, steps: int, n_envs: int, task: str) -> list[TrainJob]:
    """``n`` trainings of ``steps`` steps (seeds 100 apart) into ``root/label/jNN``."""
    spec = get_task(task)
    return [TrainJob(name=f"{label}/j{i:02d}", task=spec, reward="builtin", steps=steps, seed=100 * i,
                     out=str(root / label / f"j{i:02d}"), n_envs=n_envs, eval_episodes=2, reuse=False,
                     device="cpu") for i in range(n)]


def cpu_busy_s() -> float:
    """CPU-seconds the whole machine has been busy (all processes, all cores), from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_of(pids: list[int]) -> float:
    """User + system CPU-seconds of ``pids`` so far (0 for any that is gone)."""
    total = 0
    for pid in pids:
        try:
            total += sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])
        except (OSError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def timed(executor: Any, batch: list[TrainJob]) -> dict[str, Any]:
    """Run ``batch`` on ``executor``: wall seconds, the jobs' own training seconds, the CPU it had.

    ``machine_cpu_s``: CPU-seconds the whole machine spent during the batch; ``workers_cpu_s``:
    those of this executor's worker processes (local executor only); the rest went to other
    processes (the driver, Ray's daemons, whatever else shares the machine).
    """
    pids = [s.proc.pid for s in getattr(executor, "_live", [])]
    busy0, ours0, t0 = cpu_busy_s(), cpu_of(pids), time.perf_counter()
    outcomes = executor.run(batch)
    wall = time.perf_counter() - t0
    busy, ours = cpu_busy_s() - busy0, cpu_of(pids) - ours0
    bad = [(o.job.name, o.status, o.error) for o in outcomes if o.status != "ok"]
    if bad:
        raise SystemExit(f"trainings failed: {bad}")
    train_s = [round(float(o.result["wall_s"]), 2) for o in outcomes]
    row = {"wall_s": round(wall, 2), "train_s": train_s, "train_s_sum": round(sum(train_s), 2),
           "machine_cpu_s": round(busy, 1)}
    if pids:
        row["workers_cpu_s"] = round(ours, 1)
    log(f"{batch[0].name.split('/')[0]}: {row}")
    return row


def log(line: str) -> None:
    """A progress line on stderr, with the load average."""
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {line}", file=sys.stderr, flush=True)


def warm_up(executor: Any, root: Path, label: str, workers: int, task: str) -> float:
    """One tiny training per worker; returns its wall seconds (worker start and imports)."""
    t0 = time.perf_counter()
    outcomes = executor.run(jobs(root, f"warm-{label}", workers, 256, 2, task))
    assert all(o.status == "ok" for o in outcomes), [(o.status, o.error) for o in outcomes]
    log(f"{label} warm after {time.perf_counter() - t0:.1f} s")
    return round(time.perf_counter() - t0, 2)


def run_local(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The batch on 1 worker and on ``--workers`` workers, alternately, ``--rounds`` times."""
    out: dict[str, Any] = {"rounds": []}
    with LocalExecutor(workers=1) as one, LocalExecutor(workers=args.workers) as many:
        out["warm_up_s"] = {"1": warm_up(one, root, "local1", 1, args.task),
                            str(args.workers): warm_up(many, root, f"local{args.workers}", args.workers, args.task)}
        for r in range(args.rounds):
            row = {}
            for workers, executor in ((1, one), (args.workers, many)):
                label = f"r{r}-local{workers}"
                row[f"local_{workers}"] = timed(executor, jobs(root, label, args.jobs, args.steps, args.n_envs,
                                                               args.task))
            row["speedup"] = round(row["local_1"]["wall_s"] / row[f"local_{args.workers}"]["wall_s"], 3)
            out["rounds"].append(row)
    speedups = sorted(r["speedup"] for r in out["rounds"])
    out["speedup_median"] = speedups[len(speedups) // 2] if len(speedups) % 2 else \
        round(sum(speedups[len(speedups) // 2 - 1:len(speedups) // 2 + 1]) / 2, 3)
    return out


def run_ray(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Ray's start-up, then the batch on Ray and on the local executor (as many workers), alternately."""
    import ray

    from rewardsmith.ray_executor import RayExecutor

    out: dict[str, Any] = {"rounds": []}
    t0 = time.perf_counter()
    executor = RayExecutor(num_cpus=args.workers)
    executor._connect()  # ray.init and the progress actor
    out["ray_start_s"] = round(time.perf_counter() - t0, 2)
    log(f"ray started in {out['ray_start_s']} s")
    try:
        with LocalExecutor(workers=args.workers) as local:
            out["warm_up_s"] = {"ray": warm_up(executor, root, "ray", args.workers, args.task),
                                "local": warm_up(local, root, "local", args.workers, args.task)}
            for r in range(args.rounds):
                row = {name: timed(ex, jobs(root, f"r{r}-{name}", args.jobs, args.steps, args.n_envs, args.task))
                       for name, ex in (("ray", executor), ("local", local))}
                row["overhead_per_job_s"] = round((row["ray"]["wall_s"] - row["local"]["wall_s"]) / args.jobs, 2)
                out["rounds"].append(row)
    finally:
        t0 = time.perf_counter()
        executor.close()
        out["ray_stop_s"] = round(time.perf_counter() - t0, 2)
        assert not ray.is_initialized()
    walls = {name: sum(r[name]["wall_s"] for r in out["rounds"]) for name in ("ray", "local")}
    out["overhead_per_job_s_mean"] = round((walls["ray"] - walls["local"]) / (args.jobs * args.rounds), 2)
    return out


def main() -> None:
    """Parse the options, run the parts asked for, print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("local", "ray", "all"), default="all")
    parser.add_argument("--task", default="inverted-pendulum")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25_000)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="pairs of batches (1-worker/N-worker; ray/local)")
    args = parser.parse_args()
    report: dict[str, Any] = {"args": vars(args), "cpus": os.cpu_count(), "load_before": os.getloadavg(),
                              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    log("start")
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        root = Path(tmp)
        if args.part in ("local", "all"):
            report["local"] = run_local(args, root)
        if args.part in ("ray", "all"):
            report["ray"] = run_ray(args, root)
    report["load_after"] = os.getloadavg()
    log("done")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
