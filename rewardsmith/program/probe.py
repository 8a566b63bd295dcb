"""Stage 3: run a compiled reward program on sampled states in a resource-limited child process.

By default (POSIX) the child is a ``fork`` of the checking process, made after everything is
imported and the program compiled, so it pays for no interpreter start, no imports and no cache
load: it calls the parent's compiled function on the parent's states. Before it runs any of the
program's code it starts a new session, moves to a network namespace of its own where the OS
allows it (Linux as root), points stdin/stdout/stderr at ``/dev/null``, closes every inherited
file descriptor but its result pipe, resets signal handlers, forbids compiling, and sets
``RLIMIT_AS`` (its current size plus the memory allowance), ``RLIMIT_CPU``, ``RLIMIT_FSIZE=0`` (no
file writes), ``RLIMIT_CORE=0`` and a small ``RLIMIT_NOFILE``. The parent kills the whole process
group at the wall timeout.

Where ``fork`` is missing, or with ``REWARDSMITH_PROBE=spawn`` (or ``mode="spawn"``), the child is
a fresh ``python -I`` in a new session with a scrubbed environment (one thread for BLAS and numba)
and the same limits: it loads the program from the compile cache and never writes (it sees the
parent's cache locations, ``REWARDSMITH_CACHE`` and ``NUMBA_CACHE_DIR``, and on a miss compiles in
memory).

Either child checks, on each state: a finite scalar total and finite components, no exception,
the same result twice (determinism), inputs left unchanged, and the time per call; it also
measures how far the components are from adding up to the total (a note, not a rejection). The
states come from :func:`~rewardsmith.program.states.sample_states`.

This is defence in depth for model-written code, not a security boundary against a determined
attacker: the static allowlist and numba's nopython mode are the first two walls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.program.states import sample_states
from rewardsmith.tasks import TaskSpec

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_MB = 1536
DEFAULT_MAX_CALL_US = 1000.0
GAP_RTOL = 1e-6  # a gap between the total and the sum of the components below this (relative) is rounding
PROBE_MODES = ("auto", "fork", "spawn")


@dataclass
class ProbeReport:
    """What the probe measured.

    Attributes:
        ok: whether the program passed.
        error: the reason it did not, else None.
        n_states: states it was called on.
        per_call_us: median wall time of one call, microseconds.
        network_isolated: whether the child ran in its own network namespace.
        wall_s: wall time of the whole probe, seconds.
        component_gap: ``[min, max]`` of ``total - sum(components)`` over the states, gaps within
            float rounding (:data:`GAP_RTOL`) counted as 0; None when the program has no components
            or did not pass.
    """

    ok: bool
    error: str | None
    n_states: int
    per_call_us: float | None
    network_isolated: bool
    wall_s: float
    component_gap: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


# numba settings that decide where its cache is and which entries match (the index is keyed by the
# CPU name and features): the child must see the parent's, or it misses the cache the parent wrote.
_NUMBA_CACHE_ENV = ("NUMBA_CACHE_DIR", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")


def _child_env() -> dict[str, str]:
    """The child's whole environment: one thread, and the parent's cache locations (as absolute
    paths, since the child runs in the temporary folder)."""
    from rewardsmith.fsutil import cache_root

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1", "NUMBA_DISABLE_PERFORMANCE_WARNINGS": "1",
        "REWARDSMITH_CACHE": os.path.abspath(cache_root()),
    }
    for name in _NUMBA_CACHE_ENV:
        if os.environ.get(name):
            env[name] = os.path.abspath(os.environ[name]) if name == "NUMBA_CACHE_DIR" else os.environ[name]
    return env


def _limits(memory_mb: int, cpu_s: int) -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def probe(source: str, task: TaskSpec, states: np.ndarray | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
          memory_mb: int = DEFAULT_MEMORY_MB, max_call_us: float = DEFAULT_MAX_CALL_US,
          compiled: Any = None, mode: str | None = None) -> ProbeReport:
    """Run the (already compiled and cached) program ``source`` in a sandboxed child process.

    Args:
        compiled: the parent's :class:`~rewardsmith.program.compiler.CompiledProgram` of ``source``
            for ``task``; a forked child calls it (without it the child is spawned).
        mode: ``"fork"``, ``"spawn"`` or ``"auto"`` (the default, or ``$REWARDSMITH_PROBE``): fork
            where the OS can and ``compiled`` is given, else spawn.
    """
    t0 = time.perf_counter()
    if states is None:
        states = sample_states(task)
    mode = mode or os.environ.get("REWARDSMITH_PROBE") or "auto"
    if mode not in PROBE_MODES:
        raise ValueError(f"probe mode must be one of {', '.join(PROBE_MODES)}, got {mode!r}")
    if mode != "spawn" and compiled is not None and hasattr(os, "fork"):
        from rewardsmith.program.forked import probe_forked

        result = probe_forked(compiled, task, np.ascontiguousarray(states, dtype=np.float64), timeout_s,
                              memory_mb, lambda *a: _check_rows(*a, max_call_us))
        return _report(result, time.perf_counter() - t0, timeout_s)
    config = {
        "source": source,
        "variables": [[v.name, list(v.shape)] for v in task.variables],
        "states": np.asarray(states, dtype=np.float64).tolist(),
        "max_call_us": max_call_us,
    }
    env = _child_env()
    package_root = str(Path(__file__).resolve().parents[2])
    boot = f"import sys; sys.path.insert(0, {package_root!r}); from rewardsmith.program.probe import _child; _child()"
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot, str(write_fd)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(write_fd,),
            env=env, start_new_session=True, cwd=tempfile.gettempdir(),
            preexec_fn=lambda: _limits(memory_mb, int(timeout_s) + 1),
        )
        os.close(write_fd)
        try:
            proc.stdin.write(json.dumps(config).encode())  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            os.close(read_fd)
            return _report({"timed_out": True}, time.perf_counter() - t0, timeout_s)
        with os.fdopen(read_fd, "rb") as fh:
            raw = fh.read()
        stderr.seek(0)
        tail = stderr.read()[-2000:].decode(errors="replace").strip().splitlines()
    result = json.loads(raw) if raw else {"returncode": proc.returncode, "stderr_tail": tail}
    return _report(result, time.perf_counter() - t0, timeout_s)


def _report(result: dict[str, Any], wall: float, timeout_s: float) -> ProbeReport:
    """The report from the child's result, or from how it ended (``returncode``, ``stderr_tail``,
    ``timed_out``) when it sent none."""
    if "ok" in result:
        return ProbeReport(result["ok"], result["error"], result["n_states"], result["per_call_us"],
                           result["network_isolated"], wall, result.get("component_gap"))
    if result.get("timed_out"):
        return ProbeReport(False, f"timed out after {timeout_s:g} s (an infinite or very long loop?)",
                           0, None, False, wall)
    code, tail = result["returncode"], result.get("stderr_tail") or []
    if code < 0:
        name = signal.Signals(-code).name
        why = {"SIGSEGV": "crashed the probe process (segmentation fault)",
               "SIGXCPU": "exceeded the probe's CPU-time limit (an infinite or very long loop?)",
               "SIGKILL": "got the probe process killed (CPU or memory limit)"}.get(
                   name, f"killed the probe process ({name})")
        return ProbeReport(False, why, 0, None, False, wall)
    last = tail[-1] if tail else "no output"
    return ProbeReport(False, f"made the probe process exit with status {code}: {last}", 0, None, False, wall)


def _try_unshare_net() -> bool:  # pragma: no cover - runs in the child
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(0x40000000) == 0  # CLONE_NEWNET
    except Exception:
        return False


def _child() -> None:  # pragma: no cover - runs in the spawned child, measured through probe()
    out_fd = int(sys.argv[1])
    isolated = _try_unshare_net()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    config = json.loads(sys.stdin.buffer.read())
    try:
        from rewardsmith.program.compiler import compile_validated
        from rewardsmith.program.validate import validate_source
        from rewardsmith.tasks import Fitness, TaskSpec, Variable

        task = TaskSpec(name="probe", env_id="probe", description="",
                        variables=[Variable(n, tuple(s), "", "", "obs") for n, s in config["variables"]],
                        fitness=Fitness("", reduce="length"))
        program = validate_source(config["source"], task)
        compiled = compile_validated(program, task, load_only=True)
    except Exception as exc:
        _write_report(out_fd, {"ok": False, "error": f"could not load the program: {exc}"}, isolated)
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    states = np.asarray(config["states"], dtype=np.float64)
    _write_report(out_fd, _check_rows(compiled, task, states, config["max_call_us"]), isolated)


def _write_report(fd: int, result: dict[str, Any], isolated: bool) -> None:  # pragma: no cover - child
    """Send ``result`` to the parent and end the child (no cleanup: nothing of the parent's runs)."""
    out = {"ok": False, "error": None, "n_states": 0, "per_call_us": None, "component_gap": None, **result,
           "network_isolated": isolated}
    os.write(fd, json.dumps(out).encode())
    os._exit(0)


class _Rejected(Exception):
    pass


def _check_rows(compiled: Any, task: TaskSpec, states: np.ndarray, max_call_us: float) -> dict[str, Any]:
    """Call the program twice on every row of ``states`` and check what it does (see the module docstring)."""
    try:
        return _check_rows_or_raise(compiled, task, states, max_call_us)
    except _Rejected as exc:
        return {"ok": False, "error": str(exc)}


def _check_rows_or_raise(compiled: Any, task: TaskSpec, states: np.ndarray, max_call_us: float) -> dict[str, Any]:
    slices = task.slices()
    times, gaps = [], []
    for k, row in enumerate(states):
        args = [float(row[slices[p]][0]) if task.variable(p).shape == () else row[slices[p]].copy()
                for p in compiled.params]
        before = [np.copy(a) for a in args]
        where = f"on sampled state #{k}"
        try:
            t = time.perf_counter()
            first = compiled.entry(*args)
            times.append(time.perf_counter() - t)
            second = compiled.entry(*args)
        except MemoryError:
            raise _Rejected(f"ran out of memory {where} (the probe allows {DEFAULT_MEMORY_MB} MiB)") from None
        except Exception as exc:
            raise _Rejected(f"raised {type(exc).__name__}: {exc} {where}") from None
        for name, a, b in zip(compiled.params, args, before):
            if not np.array_equal(np.asarray(a), b, equal_nan=True):
                raise _Rejected(f"mutates its input {name!r} in place; copy it first (x = {name}.copy())")
        flat1 = np.array([first[0], *first[1]], dtype=np.float64)
        flat2 = np.array([second[0], *second[1]], dtype=np.float64)
        if not np.array_equal(flat1, flat2, equal_nan=True):
            raise _Rejected(f"is not deterministic: two calls {where} gave different results")
        if not np.isfinite(flat1[0]):
            shown = ", ".join(f"{p}={np.round(a, 3).tolist()}" for p, a in zip(compiled.params, args))
            raise _Rejected(f"returned a non-finite total ({flat1[0]}) {where} ({shown})")
        bad = [compiled.components[j] for j in range(len(compiled.components)) if not np.isfinite(flat1[j + 1])]
        if bad:
            raise _Rejected(f"returned non-finite component(s) {bad} {where}")
        gap = float(flat1[0] - np.sum(flat1[1:]))
        gaps.append(0.0 if abs(gap) <= GAP_RTOL * max(1.0, abs(flat1[0]), float(np.sum(np.abs(flat1[1:]))))
                    else gap)
    per_call = float(np.median(times) * 1e6) if times else None
    if per_call is not None and per_call > max_call_us:
        raise _Rejected(f"is too slow: {per_call:.0f} us per call (limit {max_call_us:.0f} us)")
    gap = [min(gaps), max(gaps)] if gaps and compiled.components else None
    return {"ok": True, "error": None, "n_states": len(states), "per_call_us": per_call, "component_gap": gap}
