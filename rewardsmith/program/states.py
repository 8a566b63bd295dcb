"""The states the probe calls a program on, sampled once per task and cached on disk.

:func:`sample_states` visits states of the task's env under uniformly random actions and under
saturated ones (SB3 clips actions to the box, so training sees the bounds, exactly +-1, all the
time). Sampling needs the env (MuJoCo and gymnasium imported, an env built and stepped), so the
result is kept in memory and in ``<cache_root()>/states/`` as ``.npy`` files, written atomically
and keyed by the task's ref, env and variable layout, the sampler's settings and version, and the
gymnasium and MuJoCo versions: a later process (``rewardsmith check`` again) loads it instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.fsutil import cache_root
from rewardsmith.tasks import TaskSpec

SAMPLER_VERSION = 1  # bump when the sampling below changes
_STATES: dict[str, np.ndarray] = {}


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


def _versions() -> list[str]:
    from importlib import metadata

    out = []
    for dist in ("gymnasium", "mujoco"):
        try:
            out.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} missing")
    return out


def states_key(task: TaskSpec, n: int, seed: int) -> str:
    """The content key of :func:`sample_states`'s result for ``task``, ``n`` and ``seed``."""
    blob = json.dumps({"task": task.ref, "env": task.env_id, "env_kwargs": repr(sorted(task.env_kwargs.items())),
                       "variables": [repr(v) for v in task.variables], "n": n, "seed": seed,
                       "sampler": SAMPLER_VERSION, "versions": _versions()}, sort_keys=True)
    return f"{task.name}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def _load(path: Path, task: TaskSpec) -> np.ndarray | None:
    try:
        out = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # missing, or cut short: sample again
    ok = out.dtype == np.float64 and out.ndim == 2 and out.shape[1] == task.state_size and len(out)
    return np.ascontiguousarray(out) if ok else None


def _save(path: Path, states: np.ndarray) -> None:
    """Write ``states`` to ``path`` atomically; a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, states, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def sample_states(task: TaskSpec, n: int = 64, seed: int = 0, use_cache: bool = True) -> np.ndarray:
    """Reward states for the probe: ``n`` visited under uniformly random actions from several resets,
    then (for a box action space) states visited under saturated actions, the action variable at the
    bounds of the box (clipped actions are what training mostly sees): see :func:`_saturated_actions`.

    Args:
        task: the task (its env is built only when nothing is cached).
        n, seed: how many random-action states, and the seed of everything random.
        use_cache: read and write the on-disk cache (the in-memory one is always used).

    Returns:
        ``(n + m, state_size)`` (shared: copy before writing into it); the first ``n`` rows do not depend on the rest.
    """
    key = states_key(task, n, seed)
    if key in _STATES:
        return _STATES[key]
    path = cache_root() / "states" / f"{key}.npy"
    out = _load(path, task) if use_cache else None
    if out is None:
        out = _sample(task, n, seed)
        if use_cache:
            _save(path, out)
    _STATES[key] = out
    return out


def _sample(task: TaskSpec, n: int, seed: int) -> np.ndarray:
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
    return np.ascontiguousarray(np.vstack(parts))


__all__ = ["SAMPLER_VERSION", "sample_states", "states_key"]
