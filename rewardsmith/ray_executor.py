"""The Ray executor: each training a Ray task, on a cluster or a local Ray instance.

:class:`RayExecutor` fits the :class:`~rewardsmith.executor.Executor` protocol of the local
executor: one :class:`~rewardsmith.executor.JobOutcome` per job, in order, ``on_done`` as each
finishes, the same time limits (hard, derived from the measured step rate, stalled) and the same
messages, and finished results reused (``resumed``).

* **The cluster.** ``address`` (or ``$RAY_ADDRESS``) joins a running cluster; without one a local
  Ray instance is started (``num_cpus``: default the CPU cores) and stopped again by :meth:`close`.
  A cluster that was joined is never shut down (:meth:`close` only disconnects), and a Ray session
  the caller had opened already is used as it is and left open.
* **A job** is a task (``num_cpus=cpus_per_job``, ``num_gpus=gpus_per_job``, ``max_retries=0``)
  that runs :func:`~rewardsmith.executor.run_job` with a heartbeat callback. The heartbeat sends
  the step count, at most twice a second, to a small progress actor the driver reads while it
  waits (``ray.wait`` with a timeout). A task's clock starts when it starts on a worker (one that
  waits for free resources has none yet); a task past its limit or stalled is cancelled
  (``ray.cancel(force=True)``) and reported ``timeout``; a task whose worker or node died is
  ``crashed``; a training that raised is ``error`` with its one-line message.
* **Files come back.** The worker may be on another node, so a task trains into a temporary
  folder there and returns that folder's files (result, model, normalisation statistics,
  checkpoint, reward, TensorBoard logs) as a tar archive, which the driver unpacks into the job's
  ``out``: every file replaced atomically, ``result.json`` written last, so a driver killed
  half-way never leaves a result for a half-copied model. The checkpoint files of ``continue_from``
  and ``init_from`` (folders on the driver) travel to the worker the same way.
* Ctrl-C or SIGTERM during :meth:`RayExecutor.run` cancels every task still running.

Every node needs rewardsmith (and any module a custom task's env id names) installed.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray

from rewardsmith.executor import (
    MEASURE_FRACTION,
    STALL_S,
    JobOutcome,
    TrainJob,
    _stop_on_signals,
    derived_limit,
    finished_result,
)
from rewardsmith.fsutil import atomic_write_json

POLL_S = 0.5  # how long the driver waits for a finished task between looks at the clocks
BEAT_S = 0.5  # at most two heartbeats a second per task
#: files of a checkpoint folder that are not part of the checkpoint (not shipped to workers).
_NOT_CHECKPOINT = ("result.json",)
_WORK_ROOT = "rewardsmith-ray"


# -- moving folders as bytes --------------------------------------------------------------------
def pack(folder: str | Path, top_only: bool = False, skip: Sequence[str] = ()) -> bytes:
    """The files under ``folder`` as an uncompressed tar archive (paths relative to it).

    ``top_only``: only the files directly in it (a checkpoint, no TensorBoard logs); names in
    ``skip`` and hidden files (half-written temporaries) are left out.
    """
    folder = Path(folder)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if folder.is_dir():
            paths = sorted(folder.iterdir() if top_only else folder.rglob("*"))
            for path in paths:
                rel = path.relative_to(folder)
                if path.is_file() and rel.name not in skip and not rel.name.startswith("."):
                    tar.add(path, arcname=str(rel), recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, folder: str | Path, last: str | None = None) -> list[Path]:
    """Unpack the archive ``data`` into ``folder``, each file replaced atomically; returns the paths.

    The files go to a temporary folder beside ``folder`` first, then each is moved into place
    with ``os.replace``; ``last`` (a file name at the top) is moved after all the others.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".incoming-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # pragma: no cover - Pythons without extraction filters
                for member in tar.getmembers():
                    if member.name.startswith("/") or ".." in Path(member.name).parts or not member.isfile():
                        raise ValueError(f"unsafe path in archive: {member.name!r}")
                tar.extractall(staging)
        files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: p.name == last)
        placed = []
        for path in files:
            target = folder / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            placed.append(target)
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- the worker side ----------------------------------------------------------------------------
@ray.remote(num_cpus=0)
class _Progress:  # pragma: no cover - runs in a Ray actor
    """Step counts reported by the running tasks: ``{key: steps}``."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def report(self, key: str, steps: int) -> None:
        self.steps[key] = int(steps)

    def snapshot(self) -> dict[str, int]:
        return dict(self.steps)

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            self.steps.pop(key, None)


def _clean_stale(root: Path) -> None:
    """Remove the work folders of tasks whose process is gone (a cancelled task cannot clean up)."""
    for folder in root.glob("*-*"):
        try:
            os.kill(int(folder.name.split("-", 1)[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, OSError):
            continue


def _train_task(job: TrainJob, key: str, progress: Any, shipped: dict[str, bytes]) -> tuple:  # pragma: no cover
    """The Ray task: train ``job`` into a temporary folder; ``("ok", result, files)`` or ``("error", line, tb)``."""
    progress.report.remote(key, 0)  # started: the driver's clock for this job starts now
    from stable_baselines3.common.callbacks import BaseCallback

    from rewardsmith.errors import RewardsmithError
    from rewardsmith.executor import run_job

    class Heartbeat(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last = 0.0

        def _on_step(self) -> bool:
            now = time.monotonic()
            if now - self.last >= BEAT_S:
                self.last = now
                progress.report.remote(key, self.num_timesteps)
            return True

    root = Path(tempfile.gettempdir()) / _WORK_ROOT
    root.mkdir(exist_ok=True)
    _clean_stale(root)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f"{os.getpid()}-"))
    try:
        out = work / "out"
        out.mkdir()
        moved: dict[str, Any] = {"out": str(out)}
        for field in ("continue_from", "init_from"):
            if field in shipped:
                # a continuation of the job's own folder continues in the new out, as it would locally
                place = out if field == "continue_from" and getattr(job, field) == job.out else work / field
                unpack(shipped[field], place)
                moved[field] = str(place)
        local = replace(job, **moved)
        try:
            result = run_job(local, callbacks=[Heartbeat()])
        except Exception as exc:
            message = str(exc) if isinstance(exc, RewardsmithError) else f"{type(exc).__name__}: {exc}"
            return ("error", message or type(exc).__name__, traceback.format_exc(limit=8))
        back = {path: name for name, path in moved.items() if name != "out"}
        back[str(out)] = "out"  # the job's own folder, also when it is the continued one
        return ("ok", result, pack(out), back)
    finally:
        shutil.rmtree(work, ignore_errors=True)


_train_remote = ray.remote(_train_task)


# -- the driver side ----------------------------------------------------------------------------
@dataclass
class _Task:
    job: TrainJob
    index: int
    ref: Any
    key: str
    submitted: float
    start: float | None = None
    limit: float | None = None
    deadline: float | None = None
    measured: bool = False
    last_steps: int = 0
    last_move: float = 0.0


class RayExecutor:
    """Jobs as Ray tasks, each watched against its time limit; results come back into ``job.out``.

    Args:
        address: the cluster to join (default ``$RAY_ADDRESS``; neither: start a local instance).
        cpus_per_job, gpus_per_job: the resources each training reserves.
        time_limit_s: a hard per-job limit in seconds for jobs that set none (None: derived).
        stall_s: cancel a job whose step count has not moved for this long.
        num_cpus: CPUs of a local instance this executor starts (default: the CPU cores).
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0,
                 time_limit_s: float | None = None, stall_s: float = STALL_S, num_cpus: int | None = None) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_job = float(cpus_per_job)
        self.gpus_per_job = float(gpus_per_job)
        self.time_limit_s = time_limit_s
        self.stall_s = stall_s
        self.num_cpus = num_cpus
        self.started_cluster = False  # this executor started the Ray instance (close() stops it)
        self._connected = False  # this executor called ray.init (close() disconnects)
        self._progress: Any = None
        self._steps: dict[str, int] = {}  # the last step counts read from the progress actor

    # -- the cluster --
    def _connect(self) -> None:
        if self._progress is not None and ray.is_initialized():
            return
        if self.address:  # the cluster asked for must answer, even when a Ray session is open already
            _check_reachable(self.address)
        if not ray.is_initialized():
            if self.address:
                try:
                    ray.init(address=self.address, log_to_driver=False)
                except (ConnectionError, ValueError, RuntimeError) as exc:
                    from rewardsmith.errors import RewardsmithError

                    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise RewardsmithError(f"cannot join the Ray cluster at {self.address}: {line}") from None
            else:
                ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count() or 1,
                         include_dashboard=False, log_to_driver=False)
                self.started_cluster = True
            self._connected = True
        self._progress = _Progress.remote()

    def close(self) -> None:
        """Drop the progress actor; stop the Ray instance this executor started (a joined one is left)."""
        progress, self._progress = self._progress, None
        if progress is not None and ray.is_initialized():
            with contextlib.suppress(Exception):
                ray.kill(progress)
        if self._connected:
            self._connected = False
            with contextlib.suppress(Exception):
                ray.shutdown()  # a local instance stops; from a joined cluster the driver disconnects
        if self.started_cluster:  # its workers ran here: remove what cancelled tasks left behind
            _clean_stale(Path(tempfile.gettempdir()) / _WORK_ROOT)

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- running --
    def run(self, jobs: Sequence[TrainJob],
            on_done: Callable[[JobOutcome], None] | None = None) -> list[JobOutcome]:
        """Run ``jobs`` (finished ones are reused); cancel every task if interrupted."""
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
        if not pending:
            return [o for o in outcomes if o is not None]
        self._connect()
        tasks: dict[Any, _Task] = {}
        with _stop_on_signals():
            try:
                for i, job in pending:
                    task = self._submit(i, job)
                    tasks[task.ref] = task
                while tasks:
                    ready, _ = ray.wait(list(tasks), num_returns=1, timeout=POLL_S)
                    steps = self._snapshot()
                    finished: list[tuple[_Task, JobOutcome]] = []
                    for ref in ready:
                        task = tasks.pop(ref)
                        finished.append((task, self._collect(task, steps)))
                    for task in list(tasks.values()):
                        outcome = self._check(task, steps)
                        if outcome is not None:
                            tasks.pop(task.ref)
                            finished.append((task, outcome))
                    for task, outcome in finished:
                        outcomes[task.index] = outcome
                        if on_done:
                            on_done(outcome)
                    if finished:
                        with contextlib.suppress(Exception):
                            self._progress.forget.remote([t.key for t, _ in finished])
            except BaseException:
                for task in tasks.values():
                    with contextlib.suppress(BaseException):
                        ray.cancel(task.ref, force=True)
                raise
        return [o for o in outcomes if o is not None]

    def _submit(self, index: int, job: TrainJob) -> _Task:
        shipped = {}
        for field in ("continue_from", "init_from"):
            folder = getattr(job, field)
            if folder is not None and Path(folder).is_dir():
                shipped[field] = pack(folder, top_only=True, skip=_NOT_CHECKPOINT)
        key = f"{index}-{uuid.uuid4().hex[:12]}"
        ref = _train_remote.options(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job, max_retries=0,
                                    name=f"rewardsmith:{job.name}").remote(job, key, self._progress, shipped)
        limit = job.time_limit_s if job.time_limit_s is not None else self.time_limit_s
        return _Task(job, index, ref, key, time.monotonic(), limit=limit)

    def _snapshot(self) -> dict[str, int]:
        try:
            self._steps = ray.get(self._progress.snapshot.remote(), timeout=30)
        except Exception:  # the actor is unreachable: go on with the last counts
            pass
        return self._steps

    def _elapsed(self, task: _Task, now: float) -> float:
        return now - (task.start if task.start is not None else task.submitted)

    def _collect(self, task: _Task, steps: dict[str, int]) -> JobOutcome:
        """The outcome of a finished task; an ``ok`` one's files are unpacked into ``job.out``."""
        elapsed = self._elapsed(task, time.monotonic())
        done = max(steps.get(task.key, 0), task.last_steps)
        try:
            message = ray.get(task.ref)
        except ray.exceptions.RayTaskError as exc:  # the task raised outside the training (e.g. unpickling)
            cause = getattr(exc, "cause", None) or exc
            return JobOutcome(task.job, "error", error=f"{type(cause).__name__}: {cause}".splitlines()[0],
                              wall_s=elapsed, steps_done=done)
        except ray.exceptions.RayError as exc:  # the worker or its node died, the object was lost
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return JobOutcome(task.job, "crashed", error=f"the training's Ray worker died ({type(exc).__name__}"
                              f"{': ' + line if line else ''}) after {elapsed:.0f} s at step {done:,}",
                              wall_s=elapsed, steps_done=done)
        if message[0] != "ok":
            return JobOutcome(task.job, "error", error=message[1], wall_s=elapsed, steps_done=done)
        _, result, files, back = message
        try:
            result = self._place(task.job, result, files, back)
        except OSError as exc:
            return JobOutcome(task.job, "error", error=f"could not write the results into {task.job.out}: "
                              f"{type(exc).__name__}: {exc}", wall_s=elapsed, steps_done=done)
        return JobOutcome(task.job, "ok", result, wall_s=elapsed, steps_done=max(done, int(result.get("steps", 0))))

    @staticmethod
    def _place(job: TrainJob, result: dict[str, Any], files: bytes, back: dict[str, str]) -> dict[str, Any]:
        """Unpack a task's files into ``job.out`` (``result.json`` last, its worker paths rewritten)."""
        where = {"out": job.out, "continue_from": job.continue_from, "init_from": job.init_from}
        result = {k: where.get(back[v], v) if isinstance(v, str) and v in back else v for k, v in result.items()}
        unpack(files, job.out, last="result.json")
        if (Path(job.out) / "result.json").exists():
            atomic_write_json(Path(job.out) / "result.json", result)
        return result

    def _check(self, task: _Task, steps: dict[str, int]) -> JobOutcome | None:
        """Cancel a running task past its limit or stalled; None while it may go on."""
        now = time.monotonic()
        if task.key not in steps:
            return None  # still queued for resources: no clock yet
        if task.start is None:
            task.start = task.last_move = now
            task.deadline = None if task.limit is None else now + task.limit
        count = steps[task.key]
        elapsed = now - task.start
        if count != task.last_steps:
            task.last_steps, task.last_move = count, now
        hard = task.limit is not None
        if not hard and not task.measured and count >= max(1, MEASURE_FRACTION * task.job.steps):
            task.measured = True
            task.deadline = task.start + derived_limit(elapsed, count, task.job.steps)
        why = None
        if task.deadline is not None and now > task.deadline:
            kind = "its time limit" if hard else "the limit derived from its measured step rate"
            why = (f"out of time: killed after {elapsed:.0f} s at step {count:,} of {task.job.steps:,} "
                   f"({kind}, {task.deadline - task.start:.0f} s); the reward may be slow or endless on states "
                   "that training reaches")
        elif now - task.last_move > self.stall_s:
            why = (f"out of time: no training progress for {now - task.last_move:.0f} s (stuck at step {count:,} "
                   f"of {task.job.steps:,}); the reward may be endless on states that training reaches")
        if why is None:
            return None
        with contextlib.suppress(Exception):
            ray.cancel(task.ref, force=True)
        return JobOutcome(task.job, "timeout", error=why, wall_s=elapsed, steps_done=count)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in one line when a ``host:port`` cluster address does not answer (Ray itself would retry
    for minutes, logging every attempt); ``auto`` and addresses without a port are left to Ray."""
    import socket

    from rewardsmith.errors import RewardsmithError

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RewardsmithError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): start it with "
                               "`ray start --head`, fix --address / $RAY_ADDRESS, or drop --address to run a "
                               "local Ray instance") from None


__all__ = ["RayExecutor", "pack", "unpack"]
