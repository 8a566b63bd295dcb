"""Executors: where training jobs run, each with a time limit, each failing only itself.

A :class:`TrainJob` is one call of :func:`rewardsmith.train.train` (task, reward, budget, seed,
output folder). An :class:`Executor` runs a batch of them and returns one :class:`JobOutcome` per
job, in order, calling ``on_done`` as each finishes. :class:`LocalExecutor` runs them on a pool of
``spawn``ed worker processes on this machine (at most ``workers`` at once, one torch thread each;
a worker trains one job after another, so imports are paid once, and a worker that is killed is
replaced by a fresh one); :class:`~rewardsmith.ray_executor.RayExecutor` (``--executor ray``) runs
them as Ray tasks under the same protocol and time limits.

Time limits. A reward program can be fast on the probe's states and slow, or endless, on the
states training reaches; numba code does not return to Python, so nothing in the worker can stop
it. The parent watches every job and kills the process of one that runs past its limit:

* ``time_limit_s`` given: a hard limit in seconds.
* otherwise a limit derived from the budget and the job's own measured step rate: the worker
  reports its step count (a heartbeat callback); once it has trained a tenth of its budget, the
  limit is ``elapsed + SLACK * (projected remaining time) + GRACE_S``. Until then, and throughout,
  a job whose step count stops moving for ``STALL_S`` seconds is stuck and killed.

A killed job is reported as ``timeout`` with a message that says so; a worker that dies (a
segfault, the OOM killer) is reported as ``crashed``. Stopping the parent (SIGINT, SIGTERM)
kills every worker; on Linux a worker also dies with its parent even on ``kill -9``.

A job whose output folder already holds a readable ``result.json`` for the same seed is not run
again (``resumed``): this is how a killed run resumes without retraining finished candidates.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rewardsmith.fsutil import read_json
from rewardsmith.tasks import TaskSpec

STALL_S = 300.0
GRACE_S = 60.0
SLACK = 4.0
MEASURE_FRACTION = 0.1
POLL_S = 0.1


@dataclass
class TrainJob:
    """One training: the arguments of :func:`rewardsmith.train.train`.

    Attributes:
        name: a label for messages (e.g. ``r01/c02``).
        task: the task spec (travels to the worker by pickling).
        reward: ``"builtin"``, ``"sparse"`` or program source.
        steps, seed, algo, n_envs, eval_episodes: training settings.
        out: the output folder (``result.json``, model, TensorBoard logs).
        time_limit_s: a hard limit in seconds, or None for the derived limit (module docstring).
        progress: show the training's progress bar (on the worker's stderr).
        device: ``auto``, ``cpu`` or ``cuda``.
        checked: ``reward`` is a program that already passed the full check (probe included) in
            this run, so the worker compiles it from the cache without probing it again.
        reuse: reuse a finished ``result.json`` in ``out`` for the same seed instead of training.
        continue_from: a checkpoint folder (usually ``out``) of an earlier, shorter part of this
            training to continue to ``steps`` (successive halving); a mismatch trains from scratch.
        init_from: a checkpoint folder of another training whose policy starts this one (warm start).
        keep_replay: SAC: save the replay buffer and its reward states (so warm starts can relabel it).
        intrinsic, intrinsic_coef: an exploration bonus by name (:func:`rewardsmith.intrinsic.make_bonus`)
            added during training, and its coefficient; None: none.
    """

    name: str
    task: TaskSpec
    reward: Any
    steps: int
    seed: int
    out: str
    algo: str | None = None
    n_envs: int = 8
    eval_episodes: int | None = None
    time_limit_s: float | None = None
    progress: bool = False
    reuse: bool = True
    device: str = "auto"
    checked: bool = False
    continue_from: str | None = None
    init_from: str | None = None
    keep_replay: bool = False
    intrinsic: str | None = None
    intrinsic_coef: float | None = None


@dataclass
class JobOutcome:
    """What became of a job.

    Attributes:
        job: the job.
        status: ``ok``, ``resumed`` (a finished result was reused), ``error`` (training raised),
            ``timeout`` (killed past its limit) or ``crashed`` (the worker died).
        result: the :class:`~rewardsmith.train.TrainResult` as a dict, when ``ok``/``resumed``.
        error: one line saying what went wrong, otherwise None.
        wall_s: seconds from start to finish.
        steps_done: steps the worker reported (useful for timeouts).
    """

    job: TrainJob
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    wall_s: float = 0.0
    steps_done: int = 0

    @property
    def ok(self) -> bool:
        """Whether a result is available."""
        return self.result is not None


class Executor(Protocol):
    """Runs training jobs; one outcome per job, in the jobs' order."""

    name: str

    def run(self, jobs: Sequence[TrainJob],
            on_done: Callable[[JobOutcome], None] | None = None) -> list[JobOutcome]:
        """Run ``jobs``; call ``on_done`` as each one finishes."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


def finished_result(job: TrainJob) -> dict[str, Any] | None:
    """The readable ``result.json`` of an earlier run of ``job``, or None.

    None when it is missing or cut off, or was trained with another seed, task, algorithm, a
    smaller budget or another reward (the program's source is compared with ``reward.py``).
    """
    out = Path(job.out)
    data = read_json(out / "result.json")
    if not isinstance(data, dict) or "fitness_mean" not in data or data.get("seed") != job.seed:
        return None
    if data.get("task") != job.task.name or int(data.get("steps", 0)) < job.steps:
        return None
    if job.algo is not None and data.get("algo") != job.algo.lower():
        return None
    if job.reward in ("builtin", "sparse"):
        return data if data.get("reward") == job.reward else None
    try:
        same = isinstance(job.reward, str) and (out / "reward.py").read_text() == job.reward
    except OSError:
        same = False
    return data if same else None


# -- the worker side ----------------------------------------------------------------------------
def _die_with_parent() -> None:  # pragma: no cover - runs in the worker
    """Ask Linux to SIGKILL this process when its parent dies (even by ``kill -9``)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker(conn: Any, counter: Any) -> None:  # pragma: no cover - runs in the worker
    """Train the jobs that come down ``conn`` one after another (None ends), reporting steps in ``counter``."""
    _die_with_parent()
    # the parent decides: it kills us (SIGKILL) when it stops, so a group-wide SIGINT/SIGTERM
    # (Ctrl-C, timeout, a batch scheduler) cannot kill a training before the parent notices
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from stable_baselines3.common.callbacks import BaseCallback

    from rewardsmith.errors import RewardsmithError

    class Heartbeat(BaseCallback):
        """Reports the steps this job has trained (a continued training counts from where it resumed)."""

        def _on_training_start(self) -> None:
            self._base = self.num_timesteps

        def _on_step(self) -> bool:
            counter.value = self.num_timesteps - getattr(self, "_base", 0)
            return True

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        counter.value = 0
        try:
            conn.send(("ok", run_job(job, callbacks=[Heartbeat()])))
        except Exception as exc:
            message = str(exc) if isinstance(exc, RewardsmithError) else f"{type(exc).__name__}: {exc}"
            conn.send(("error", message or type(exc).__name__, traceback.format_exc(limit=8)))


def run_job(job: TrainJob, callbacks: list | None = None) -> dict[str, Any]:
    """Train ``job`` in this process and return its :class:`~rewardsmith.train.TrainResult` as a dict.

    The body every executor runs on its worker (a local process, a Ray task). A ``checked``
    program is loaded from the compile cache without a second probe.
    """
    from rewardsmith.train import train

    reward = job.reward
    if job.checked and isinstance(reward, str) and reward not in ("builtin", "sparse"):
        from rewardsmith.shaping.programs import load_any

        reward = load_any(reward, job.task, run_probe=False)
    result = train(job.task, reward, steps=job.steps, seed=job.seed, algo=job.algo, n_envs=job.n_envs,
                   device=job.device, out=job.out, eval_episodes=job.eval_episodes, progress=job.progress,
                   callbacks=callbacks, continue_from=job.continue_from, init_from=job.init_from,
                   keep_replay=job.keep_replay, intrinsic=job.intrinsic, intrinsic_coef=job.intrinsic_coef)
    return result.to_dict()


# -- the parent side ----------------------------------------------------------------------------
@dataclass
class _Slot:
    """A worker process and its two channels; it trains one job at a time."""

    proc: Any
    conn: Any
    counter: Any


@dataclass
class _Running:
    job: TrainJob
    index: int
    slot: _Slot
    start: float
    last_steps: int = 0
    last_move: float = 0.0
    deadline: float | None = None
    measured: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def derived_limit(elapsed: float, steps_done: int, steps_total: int) -> float:
    """The derived time limit (seconds from the start) once ``steps_done`` steps took ``elapsed`` s."""
    remaining = max(steps_total - steps_done, 0) * elapsed / max(steps_done, 1)
    return elapsed + SLACK * remaining + GRACE_S


class LocalExecutor:
    """Jobs on ``workers`` processes of this machine, each watched against its time limit.

    Args:
        workers: jobs at once (default: the CPU cores).
        time_limit_s: a hard per-job limit in seconds for jobs that set none (None: derived).
        stall_s: kill a job whose step count has not moved for this long.
    """

    name = "local"

    def __init__(self, workers: int | None = None, time_limit_s: float | None = None,
                 stall_s: float = STALL_S) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.time_limit_s = time_limit_s
        self.stall_s = stall_s
        self._ctx = mp.get_context("spawn")
        self._idle: list[_Slot] = []
        self._live: list[_Slot] = []  # every worker started and not yet reaped

    def run(self, jobs: Sequence[TrainJob],
            on_done: Callable[[JobOutcome], None] | None = None) -> list[JobOutcome]:
        """Run ``jobs`` (finished ones are reused); kill every worker if interrupted."""
        outcomes: list[JobOutcome | None] = [None] * len(jobs)
        pending: list[tuple[int, TrainJob]] = []
        for i, job in enumerate(jobs):
            done = finished_result(job) if job.reuse else None
            if done is not None:
                outcomes[i] = JobOutcome(job, "resumed", {**done, "resumed": True}, wall_s=0.0,
                                         steps_done=int(done.get("steps", 0)))
                if on_done:
                    on_done(outcomes[i])
            else:
                pending.append((i, job))
        running: list[_Running] = []
        idle = self._idle
        with _stop_on_signals(), self._reaper(running):
            while pending or running:
                while pending and len(running) < self.workers:
                    i, job = pending.pop(0)
                    running.append(self._start(i, job, idle.pop() if idle else None))
                time.sleep(POLL_S)
                for r in list(running):
                    outcome = self._check(r)
                    if outcome is not None:
                        running.remove(r)
                        if r.slot.proc.is_alive():
                            idle.append(r.slot)  # reuse the warm process for the next job
                        outcomes[r.index] = outcome
                        if on_done:
                            on_done(outcome)
        return [o for o in outcomes if o is not None]

    def _spawn(self) -> _Slot:
        parent, child = self._ctx.Pipe(duplex=True)
        counter = self._ctx.Value("q", 0, lock=False)
        proc = self._ctx.Process(target=_worker, args=(child, counter), daemon=True, name="rewardsmith-worker")
        slot = _Slot(proc, parent, counter)
        self._live[:] = [s for s in self._live if s.proc.is_alive()]
        self._live.append(slot)
        proc.start()
        child.close()
        return slot

    def _start(self, index: int, job: TrainJob, slot: _Slot | None) -> _Running:
        if slot is not None and not slot.proc.is_alive():
            slot = None  # died while idle: replace it
        slot = slot or self._spawn()
        slot.counter.value = 0
        try:
            slot.conn.send(job)
        except OSError:
            _kill(slot.proc)
            slot = self._spawn()
            slot.conn.send(job)
        now = time.monotonic()
        limit = job.time_limit_s if job.time_limit_s is not None else self.time_limit_s
        return _Running(job, index, slot, now, last_move=now,
                        deadline=None if limit is None else now + limit, extra={"hard": limit is not None})

    def _check(self, r: _Running) -> JobOutcome | None:
        now = time.monotonic()
        elapsed = now - r.start
        steps = int(r.slot.counter.value)
        if r.slot.conn.poll():
            try:
                message = r.slot.conn.recv()
            except (EOFError, OSError):
                message = None
            if message and message[0] == "ok":
                return JobOutcome(r.job, "ok", message[1], wall_s=elapsed, steps_done=steps)
            if message:
                return JobOutcome(r.job, "error", error=message[1], wall_s=elapsed, steps_done=steps)
        if not r.slot.proc.is_alive():
            code = r.slot.proc.exitcode
            how = f"exit status {code}"
            if code is not None and code < 0:
                try:
                    how = f"signal {signal.Signals(-code).name}"
                except ValueError:
                    how = f"signal {-code}"
            return JobOutcome(r.job, "crashed", error=f"the training process died ({how}) after {elapsed:.0f} s "
                              f"at step {steps:,}", wall_s=elapsed, steps_done=steps)
        if steps != r.last_steps:
            r.last_steps, r.last_move = steps, now
        if not r.extra["hard"] and not r.measured and steps >= max(1, MEASURE_FRACTION * r.job.steps):
            r.measured = True
            r.deadline = r.start + derived_limit(elapsed, steps, r.job.steps)
        why = None
        if r.deadline is not None and now > r.deadline:
            kind = "its time limit" if r.extra["hard"] else "the limit derived from its measured step rate"
            why = (f"out of time: killed after {elapsed:.0f} s at step {steps:,} of {r.job.steps:,} "
                   f"({kind}, {r.deadline - r.start:.0f} s); the reward may be slow or endless on states "
                   "that training reaches")
        elif now - r.last_move > self.stall_s:
            why = (f"out of time: no training progress for {now - r.last_move:.0f} s (stuck at step {steps:,} of "
                   f"{r.job.steps:,}); the reward may be endless on states that training reaches")
        if why is None:
            return None
        _kill(r.slot.proc)
        return JobOutcome(r.job, "timeout", error=why, wall_s=elapsed, steps_done=steps)

    @contextlib.contextmanager
    def _reaper(self, running: list[_Running]) -> Iterator[None]:
        """Kill the busy workers when :meth:`run` is left early (an interruption, an error)."""
        try:
            yield
        except BaseException:
            self._kill_all()
            raise

    def _kill_all(self) -> None:
        """SIGKILL every worker this executor started; a further Ctrl-C cannot cut it short."""
        slots, self._live[:], self._idle[:] = list(self._live), [], []
        for slot in slots:
            try:
                if slot.proc.is_alive():
                    slot.proc.kill()
            except BaseException:
                continue
        for slot in slots:
            try:
                slot.proc.join(timeout=10)
            except BaseException:
                continue

    def close(self) -> None:
        """Stop the idle workers (they are kept warm between :meth:`run` calls until then)."""
        idle, self._idle[:] = list(self._idle), []
        for slot in idle:
            with contextlib.suppress(Exception):
                slot.conn.send(None)
        for slot in idle:
            slot.proc.join(timeout=5)
        self._kill_all()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _kill(proc: Any) -> None:
    with contextlib.suppress(Exception):
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGTERM (SIGINT raises KeyboardInterrupt as usual)."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM into an exception in the main thread, so workers are killed on the way out."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, _frame: Any) -> None:
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_executor(kind: str = "local", workers: int | None = None, time_limit_s: float | None = None,
                  address: str | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> Executor:
    """The executor called ``kind``: ``local`` or ``ray``.

    ``local``: a :class:`LocalExecutor` of ``workers`` processes. ``ray``: a
    :class:`~rewardsmith.ray_executor.RayExecutor` that joins the cluster at ``address`` (default
    ``$RAY_ADDRESS``) or starts a local Ray instance of ``workers * cpus_per_job`` CPUs (default:
    the CPU cores), each job reserving ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs. A
    RewardsmithError when the kind is unknown or Ray is not installed.
    """
    from rewardsmith.errors import RewardsmithError

    if kind == "local":
        return LocalExecutor(workers=workers, time_limit_s=time_limit_s)
    if kind == "ray":
        try:
            from rewardsmith.ray_executor import RayExecutor
        except ImportError as exc:
            raise RewardsmithError(f'the ray executor needs Ray ({exc}): pip install "rewardsmith[ray]"') from None
        num_cpus = None if workers is None else max(1, math.ceil(workers * cpus_per_job))
        return RayExecutor(address=address, cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job,
                           time_limit_s=time_limit_s, num_cpus=num_cpus)
    raise RewardsmithError(f"unknown executor {kind!r}: use local or ray")


__all__ = ["Executor", "Interrupted", "JobOutcome", "LocalExecutor", "TrainJob", "finished_result",
           "make_executor", "run_job"]
