"""Stage 3: run a compiled reward program on sampled states in a resource-limited subprocess.

The child is ``python -I`` in a new session with a scrubbed environment (one thread for BLAS and
numba), ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE=0`` (no file writes), a small
``RLIMIT_NOFILE`` once it has loaded the program, stdout and stderr away from the terminal, and a
network namespace of its own where the OS allows it (Linux as root). The parent kills the whole
process group at the wall timeout. It loads the program from the compile cache and never writes: it sees the parent's cache
locations (``REWARDSMITH_CACHE``, ``NUMBA_CACHE_DIR``) and, on a miss, compiles in memory. It
checks, on each state: a finite scalar total and finite components, no exception, the same result
twice (determinism), inputs left unchanged, and the time per call; it also measures how far the
components are from adding up to the total (a note, not a rejection).

The states (:func:`sample_states`) are visited under random actions and under saturated ones: SB3
clips actions to the box, so training sees the bounds (exactly +-1) all the time.

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

from rewardsmith.tasks import TaskSpec

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_MB = 1536
DEFAULT_MAX_CALL_US = 1000.0
GAP_RTOL = 1e-6  # a gap between the total and the sum of the components below this (relative) is rounding
_STATES: dict[tuple[str, int, int], np.ndarray] = {}


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


def _saturated_actions(space: Any, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Actions at the bounds, as training sees them once SB3 clips its actions: zeros, all high, all
    low, alternating signs both ways, each component alone at either bound, then ``n`` random
    corners of the box (bang-bang). An infinite bound counts as +-1."""
    low = np.where(np.isfinite(space.low), space.low, -1.0).astype(np.float64)
    high = np.where(np.isfinite(space.high), space.high, 1.0).astype(np.float64)
    zero = np.clip(np.zeros(space.shape), low, high)
    alt = np.indices(space.shape).sum(axis=0) % 2 == 0
    out = [zero, high.copy(), low.copy(), np.where(alt, high, low), np.where(alt, low, high)]
    for i in np.ndindex(space.shape):
        for bound in (high, low):
            a = zero.copy()
            a[i] = bound[i]
            out.append(a)
    out += [np.where(rng.random(space.shape) < 0.5, low, high) for _ in range(n)]
    return out


def _drive(task: TaskSpec, env: Any, reader: Any, actions: Any, n: int, seed: int,
           rng: np.random.Generator) -> np.ndarray:
    """``n`` states visited by stepping ``env`` with ``actions(i)`` at step ``i``."""
    out = np.empty((n, task.state_size))
    obs, info = env.reset(seed=seed)
    action = np.zeros(env.action_space.shape)
    for i in range(n):
        reader.read(obs, info, action, out[i])
        action = actions(i)
        obs, _, term, trunc, info = env.step(action)
        if term or trunc or rng.random() < 0.05:
            obs, info = env.reset(seed=int(rng.integers(1 << 31)))
            action = np.zeros(env.action_space.shape)
    return out


def sample_states(task: TaskSpec, n: int = 64, seed: int = 0) -> np.ndarray:
    """Reward states for the probe: ``n`` visited under uniformly random actions from several resets,
    then (for a box action space) states visited under saturated actions, the action variable at the
    bounds of the box (clipped actions are what training mostly sees): see :func:`_saturated_actions`.

    Returns:
        ``(n + m, state_size)``; the first ``n`` rows do not depend on the rest.
    """
    key = (task.name, n, seed)
    if key in _STATES:
        return _STATES[key]
    import gymnasium as gym

    from rewardsmith.state import StateReader

    env = task.make_env()
    try:
        reader = StateReader(task, env)
        rng = np.random.default_rng(seed)
        env.action_space.seed(seed)
        parts = [_drive(task, env, reader, lambda i: env.action_space.sample(), n, seed, rng)]
        if isinstance(env.action_space, gym.spaces.Box):
            saturated = _saturated_actions(env.action_space, rng, max(n // 2, 1))
            parts.append(_drive(task, env, reader, lambda i: saturated[i].astype(env.action_space.dtype),
                                len(saturated), seed + 1, rng))
    finally:
        env.close()
    out = np.ascontiguousarray(np.vstack(parts))
    _STATES[key] = out
    return out


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
          memory_mb: int = DEFAULT_MEMORY_MB, max_call_us: float = DEFAULT_MAX_CALL_US) -> ProbeReport:
    """Run the (already compiled and cached) program ``source`` in a sandboxed child process."""
    t0 = time.perf_counter()
    if states is None:
        states = sample_states(task)
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
            return ProbeReport(False, f"timed out after {timeout_s:g} s (an infinite or very long loop?)",
                               0, None, False, time.perf_counter() - t0)
        with os.fdopen(read_fd, "rb") as fh:
            raw = fh.read()
        stderr.seek(0)
        tail = stderr.read()[-2000:].decode(errors="replace").strip().splitlines()
    wall = time.perf_counter() - t0
    if raw:
        result = json.loads(raw)
        return ProbeReport(result["ok"], result["error"], result["n_states"], result["per_call_us"],
                           result["network_isolated"], wall, result.get("component_gap"))
    code = proc.returncode
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


def _child() -> None:  # pragma: no cover - runs in the child, measured through probe()
    out_fd = int(sys.argv[1])
    isolated = _try_unshare_net()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def report(ok: bool, error: str | None, n: int = 0, per_call: float | None = None,
               gap: list[float] | None = None) -> None:
        os.write(out_fd, json.dumps({"ok": ok, "error": error, "n_states": n, "per_call_us": per_call,
                                     "network_isolated": isolated, "component_gap": gap}).encode())
        os._exit(0)

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
        report(False, f"could not load the program: {exc}")
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    states = np.asarray(config["states"], dtype=np.float64)
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
            report(False, f"ran out of memory {where} (the probe allows {DEFAULT_MEMORY_MB} MiB)")
        except Exception as exc:
            report(False, f"raised {type(exc).__name__}: {exc} {where}")
        for name, a, b in zip(compiled.params, args, before):
            if not np.array_equal(np.asarray(a), b, equal_nan=True):
                report(False, f"mutates its input {name!r} in place; copy it first (x = {name}.copy())")
        flat1 = np.array([first[0], *first[1]], dtype=np.float64)
        flat2 = np.array([second[0], *second[1]], dtype=np.float64)
        if not np.array_equal(flat1, flat2, equal_nan=True):
            report(False, f"is not deterministic: two calls {where} gave different results")
        if not np.isfinite(flat1[0]):
            shown = ", ".join(f"{p}={np.round(a, 3).tolist()}" for p, a in zip(compiled.params, args))
            report(False, f"returned a non-finite total ({flat1[0]}) {where} ({shown})")
        bad = [compiled.components[j] for j in range(len(compiled.components)) if not np.isfinite(flat1[j + 1])]
        if bad:
            report(False, f"returned non-finite component(s) {bad} {where}")
        gap = float(flat1[0] - np.sum(flat1[1:]))
        gaps.append(0.0 if abs(gap) <= GAP_RTOL * max(1.0, abs(flat1[0]), float(np.sum(np.abs(flat1[1:]))))
                    else gap)
    per_call = float(np.median(times) * 1e6) if times else None
    if per_call is not None and per_call > config["max_call_us"]:
        report(False, f"is too slow: {per_call:.0f} us per call (limit {config['max_call_us']:.0f} us)")
    gap = [min(gaps), max(gaps)] if gaps and compiled.components else None
    report(True, None, len(states), per_call, gap)
