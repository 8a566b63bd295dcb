"""Simulator snapshots of segments, and rendering them back into frames for a human teacher.

A snapshot is one float64 vector per step from which the env can be put back into that step's
state and rendered: MuJoCo envs ``[time, qpos, qvel]`` (and ``mocap``/``act`` are not needed by
the envs rewardsmith ships), classic-control envs with a ``state`` attribute (Pendulum,
MountainCar, CartPole, Acrobot) that state. Envs with neither cannot be snapshotted
(:func:`snapshot` raises).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def snapshot(env: Any) -> np.ndarray:
    """The current simulator state of ``env`` (any wrapper of it) as a flat float64 vector."""
    base = getattr(env, "unwrapped", env)
    data = getattr(base, "data", None)
    if data is not None and hasattr(data, "qpos") and hasattr(data, "qvel"):
        return np.concatenate([[float(data.time)], np.asarray(data.qpos, dtype=np.float64),
                               np.asarray(data.qvel, dtype=np.float64)])
    state = getattr(base, "state", None)
    if state is not None:
        return np.asarray(state, dtype=np.float64).reshape(-1).copy()
    raise TypeError(f"cannot snapshot {type(base).__name__}: it is neither a MuJoCo env nor has a `state`")


def restore(env: Any, snap: np.ndarray) -> None:
    """Put ``env`` back into the state :func:`snapshot` recorded (for rendering, not for stepping on)."""
    base = getattr(env, "unwrapped", env)
    data = getattr(base, "data", None)
    snap = np.asarray(snap, dtype=np.float64)
    if data is not None and hasattr(data, "qpos") and hasattr(data, "qvel"):
        nq, nv = len(data.qpos), len(data.qvel)
        if len(snap) != 1 + nq + nv:
            raise ValueError(f"snapshot has {len(snap)} values, this env needs {1 + nq + nv}")
        base.set_state(snap[1:1 + nq], snap[1 + nq:])
        data.time = float(snap[0])
        return
    if getattr(base, "state", None) is not None:
        base.state = snap.copy() if isinstance(base.state, np.ndarray) else tuple(snap.tolist())
        return
    raise TypeError(f"cannot restore {type(base).__name__}: it is neither a MuJoCo env nor has a `state`")


__all__ = ["restore", "snapshot"]
