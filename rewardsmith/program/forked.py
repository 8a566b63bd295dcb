"""The probe's forked child: the checking process, forked after its imports, then locked down.

:func:`probe_forked` forks; the child locks itself down (see
:mod:`rewardsmith.program.probe`) before it calls any of the program's code, runs the checks on the
parent's states with the parent's compiled function, writes one JSON result to a pipe and leaves
with ``os._exit`` (no atexit handler, no buffer of the parent's flushed twice). The parent reads
the pipe until the child closes it or the wall timeout passes, then kills the child's process group.

The child imports nothing and compiles nothing (its function's dispatcher refuses to compile): a
lock that another thread of the parent held at the fork stays held in the child forever, and the
only locks the child takes are the allocator's, which the C library resets at a fork.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rewardsmith.tasks import TaskSpec

_RESULT_FD = 3  # the child's result pipe, once every other descriptor is closed
_CHILD_NOFILE = 16


def _address_space_bytes() -> int:
    """The process's current virtual size (Linux: ``/proc/self/statm``), else 0."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _unshare_net(libc: Any) -> bool:  # pragma: no cover - runs in the child
    try:
        return libc is not None and libc.unshare(0x40000000) == 0  # CLONE_NEWNET
    except Exception:
        return False


def _lock_down(write_fd: int, memory_mb: int, cpu_s: int, libc: Any, vsize: int) -> bool:  # pragma: no cover
    """Everything the child does before it runs the program's code; returns whether the network
    is isolated."""
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM, signal.SIGCHLD, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    isolated = _unshare_net(libc)
    os.dup2(write_fd, _RESULT_FD)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(_RESULT_FD + 1, max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024))
    limit = vsize + (memory_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (_CHILD_NOFILE, _CHILD_NOFILE))
    return isolated


def _child(compiled: Any, task: TaskSpec, states: np.ndarray, check: Callable[..., dict[str, Any]],
           write_fd: int, memory_mb: int, cpu_s: int, libc: Any, vsize: int) -> None:  # pragma: no cover
    """The forked child's whole life; never returns."""
    result: dict[str, Any] = {"ok": False, "error": "the probe process failed before checking"}
    isolated = False
    try:
        isolated = _lock_down(write_fd, memory_mb, cpu_s, libc, vsize)
        compiled.entry.disable_compile()
        result = check(compiled, task, states)
    except MemoryError:
        result = {"ok": False, "error": f"ran out of memory (the probe allows {memory_mb} MiB)"}
    except BaseException as exc:  # whatever happens, report it and leave
        result = {"ok": False, "error": f"made the probe process fail: {type(exc).__name__}: {exc}"}
    try:
        out = {"ok": False, "error": None, "n_states": 0, "per_call_us": None, "component_gap": None,
               **result, "network_isolated": isolated}
        os.write(_RESULT_FD, json.dumps(out).encode())
    finally:
        os._exit(0)


def probe_forked(compiled: Any, task: TaskSpec, states: np.ndarray, timeout_s: float, memory_mb: int,
                 check: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Run ``check(compiled, task, states)`` in a locked-down fork; the child's result, or how it
    ended (``timed_out``, or ``returncode`` as a negative signal number / exit status)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - no C library to call unshare through
        libc = None
    vsize = _address_space_bytes()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        _child(compiled, task, states, check, write_fd, memory_mb, int(timeout_s) + 1, libc, vsize)
    os.close(write_fd)
    chunks, deadline, timed_out = [], time.monotonic() + timeout_s, False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if timed_out:
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    kill()
                except OSError:
                    pass
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"timed_out": True}
    if chunks:
        return json.loads(b"".join(chunks))
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return {"returncode": code, "stderr_tail": []}


__all__ = ["probe_forked"]
