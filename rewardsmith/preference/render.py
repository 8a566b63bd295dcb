"""Simulator snapshots of segments, and rendering segments for teachers: frames, GIFs and text.

A snapshot is one float64 vector per step from which the env can be put back into that step's
state and rendered: MuJoCo envs ``[time, qpos, qvel]`` (and ``mocap``/``act`` are not needed by
the envs rewardsmith ships), classic-control envs with a ``state`` attribute (Pendulum,
MountainCar, CartPole, Acrobot) that state. Envs with neither cannot be snapshotted
(:func:`snapshot` raises).

For a human teacher, :func:`render_segment` turns a segment's snapshots back into ``(H, W, 3)``
uint8 frames (MuJoCo offscreen, ``MUJOCO_GL=egl`` headless; classic control through pygame) and
:func:`side_by_side_gif` writes two segments into one GIF, segment "1" left, "2" right. For an
LLM teacher (and the human's terminal line), :func:`describe_segment` and
:func:`summarize_segment` turn a segment's reward states into text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.errors import RewardsmithError, TaskSpecError
from rewardsmith.preference.segments import Segment
from rewardsmith.state import split_state
from rewardsmith.tasks import TaskSpec, get_task

SEPARATOR = 4  # pixels of the column between the two segments of a side-by-side GIF
LABEL_HEIGHT = 14  # pixels of the strip above each segment that carries its number


class RenderError(RewardsmithError, ValueError):
    """A segment cannot be rendered (no snapshots, an env that renders nothing, ...)."""


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


# ------------------------------------------------------------------------------ frames


def make_render_env(task: str | TaskSpec, size: int | None = None) -> Any:
    """The task's env with ``render_mode="rgb_array"``, reset once (so that it may render).

    ``size``: MuJoCo envs render ``size`` x ``size`` pixels; envs without ``width``/``height``
    arguments (classic control) render at their own size (:func:`render_segment` scales them).
    """
    spec = get_task(task)
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo; classic control ignores it
    env = None
    if size is not None:
        try:
            env = spec.make_env(render_mode="rgb_array", width=int(size), height=int(size))
        except (TypeError, TaskSpecError):
            env = None
    if env is None:
        env = spec.make_env(render_mode="rgb_array")
    env.reset(seed=0)
    return env


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Scale so that the longer side is ``size`` pixels (aspect kept; area-averaged, thin lines survive)."""
    from PIL import Image

    h, w = frame.shape[:2]
    if max(h, w) == size:
        return frame
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    return np.asarray(Image.fromarray(frame).resize((nw, nh), Image.Resampling.BOX), dtype=np.uint8)


def _who(segment: Segment) -> str:
    origin = f"origin {segment.origin!r}, " if segment.origin else ""
    return f"segment ({origin}{segment.length} steps)"


def render_segment(task: str | TaskSpec, segment: Segment, env: Any = None, every: int = 1,
                   size: int | None = None) -> list[np.ndarray]:
    """Frames of a segment: each snapshot (one in ``every``) restored into a rendering env.

    Args:
        task: the task the segment comes from.
        segment: a segment with ``snapshots`` (``(L, K)``).
        env: an env made with ``render_mode="rgb_array"`` and reset (default: one is made with
            :func:`make_render_env` and closed afterwards).
        every: render one step in ``every``.
        size: the longer side of each frame in pixels (default: the env's own size).

    Returns:
        ``ceil(L / every)`` frames, ``(H, W, 3)`` uint8 copies.

    Raises:
        RenderError: the segment has no snapshots, or the env renders nothing.
    """
    if segment.snapshots is None:
        raise RenderError(f"{_who(segment)} has no simulator snapshots, so it cannot be rendered: record "
                          "them while collecting rollouts (rewardsmith.preference.render.snapshot(env) at "
                          "every step), or use a teacher that reads numbers (scripted, llm)")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    own = env is None
    if own:
        env = make_render_env(task, size)
    try:
        frames = []
        for snap in segment.snapshots[::every]:
            restore(env, snap)
            frame = env.render()
            if frame is None:
                raise RenderError(f"{getattr(getattr(env, 'spec', None), 'id', None) or env} rendered no frame: "
                                  "make it with render_mode='rgb_array'")
            frame = np.asarray(frame)[..., :3].astype(np.uint8, copy=True)  # the renderer reuses its buffer
            frames.append(_resize(frame, int(size)) if size is not None else frame)
        return frames
    finally:
        if own:
            env.close()


# 3 x 5 bitmaps of the labels drawn above each panel
_GLYPHS = {"1": ["010", "110", "010", "010", "111"], "2": ["111", "001", "111", "100", "111"]}


def _label_strip(width: int, text: str) -> np.ndarray:
    """A ``(LABEL_HEIGHT, width, 3)`` dark strip with ``text`` (digits 1/2) drawn in white, centred."""
    strip = np.full((LABEL_HEIGHT, width, 3), 32, dtype=np.uint8)
    scale = 2
    glyph = np.concatenate([np.array([[c == "1" for c in row] for row in _GLYPHS[ch]]) for ch in text], axis=1)
    glyph = np.kron(glyph, np.ones((scale, scale), dtype=bool))
    gh, gw = glyph.shape
    top, left = max(0, (LABEL_HEIGHT - gh) // 2), max(0, (width - gw) // 2)
    region = strip[top:top + gh, left:left + gw]
    region[glyph[:region.shape[0], :region.shape[1]]] = 255
    return strip


def _panel(frames: Sequence[np.ndarray], n: int, height: int, width: int, label: str) -> list[np.ndarray]:
    """``n`` frames of one side: padded to ``height`` x ``width``, the last frame held, a label on top."""
    strip = _label_strip(width, label)
    out = []
    for i in range(n):
        f = frames[min(i, len(frames) - 1)]
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        canvas[:f.shape[0], :f.shape[1]] = f
        out.append(np.concatenate([strip, canvas], axis=0))
    return out


def side_by_side(left: Sequence[np.ndarray], right: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frames of two segments side by side: ``"1"`` left, ``"2"`` right, a light column between.

    The shorter side holds its last frame; each frame is ``(LABEL_HEIGHT + H, W_l + SEPARATOR + W_r, 3)``.
    """
    if not left or not right:
        raise RenderError("side_by_side needs at least one frame per side")
    height = max(f.shape[0] for f in (*left, *right))
    wl, wr = max(f.shape[1] for f in left), max(f.shape[1] for f in right)
    n = max(len(left), len(right))
    sep = np.full((LABEL_HEIGHT + height, SEPARATOR, 3), 200, dtype=np.uint8)
    return [np.concatenate([a, sep, b], axis=1)
            for a, b in zip(_panel(left, n, height, wl, "1"), _panel(right, n, height, wr, "2"))]


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write ``frames`` as a looping GIF at ``fps`` frames per second (Pillow, which matplotlib needs)."""
    from PIL import Image

    if not frames:
        raise RenderError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    duration = max(20, round(1000.0 / fps))
    tmp = path.with_name(path.name + ".part")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    os.replace(tmp, path)  # a reader never sees half a GIF
    return path


def default_fps(env: Any, every: int = 1) -> float:
    """Real-time playback: the env's ``render_fps`` (or ``1 / dt``) divided by ``every``; 30 if unknown."""
    fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    if not fps:
        dt = getattr(getattr(env, "unwrapped", env), "dt", None)
        fps = 1.0 / dt if dt else 30.0
    return float(fps) / every


def side_by_side_gif(task: str | TaskSpec, left: Segment, right: Segment, path: str | Path,
                     fps: float | None = None, every: int = 1, size: int | None = 160,
                     env: Any = None) -> Path:
    """Write one GIF with ``left`` (labelled "1") and ``right`` ("2") playing side by side.

    Args:
        task: the task both segments come from.
        left, right: segments with snapshots.
        path: the GIF to write (folders are made; written atomically).
        fps: playback rate (default: real time, :func:`default_fps`).
        every: render one step in ``every``.
        size: the longer side of each panel in pixels (None: the env's own size).
        env: a rendering env to reuse (default: one made and closed here).

    Returns:
        ``path``. Raises :class:`RenderError` when a segment has no snapshots.
    """
    for seg in (left, right):
        if seg.snapshots is None:
            render_segment(task, seg)  # raises the no-snapshots error
    own = env is None
    if own:
        env = make_render_env(task, size)
    try:
        frames = side_by_side(render_segment(task, left, env, every, size),
                              render_segment(task, right, env, every, size))
        return write_gif(frames, path, fps if fps is not None else default_fps(env, every))
    finally:
        if own:
            env.close()


# -------------------------------------------------------------------------------- text


def _fmt(x: Any, decimals: int) -> str:
    vals = np.round(np.atleast_1d(np.asarray(x, dtype=np.float64)), decimals) + 0.0  # no "-0.00"
    text = ", ".join(f"{float(v):.{decimals}f}" for v in vals.reshape(-1))
    return text if np.ndim(x) == 0 else f"[{text}]"


def segment_stats(task: str | TaskSpec, segment: Segment) -> dict[str, dict[str, np.ndarray]]:
    """Per variable: ``start``, ``end``, ``mean``, ``min``, ``max`` over the segment's steps.

    Each value has the variable's shape (elementwise over the steps for a vector variable).
    """
    spec = get_task(task)
    if segment.states.shape[1] != spec.state_size:
        raise ValueError(f"segment has {segment.states.shape[1]} state values per step, task "
                         f"{spec.name!r} {spec.state_size}")
    parts = split_state(spec, segment.states)
    return {name: {"start": v[0], "end": v[-1], "mean": v.mean(axis=0), "min": v.min(axis=0),
                   "max": v.max(axis=0)} for name, v in parts.items()}


def describe_segment(task: str | TaskSpec, segment: Segment, decimals: int = 3) -> str:
    """One line per variable: ``name (unit): start a, end b, mean c, min d, max e``."""
    spec = get_task(task)
    stats = segment_stats(spec, segment)
    lines = []
    for var in spec.variables:
        unit = f" ({var.unit})" if var.unit else ""
        lines.append(f"{var.name}{unit}: " + ", ".join(f"{k} {_fmt(stats[var.name][k], decimals)}"
                                                         for k in ("start", "end", "mean", "min", "max")))
    return "\n".join(lines)


def summarize_segment(task: str | TaskSpec, segment: Segment, max_variables: int = 3, decimals: int = 2) -> str:
    """A one-line summary: steps, origin, and ``start->end`` of the first variables (actions left out)."""
    spec = get_task(task)
    stats = segment_stats(spec, segment)
    shown = [v for v in spec.variables if v.name != "action"][:max_variables]
    moves = ", ".join(f"{v.name} {_fmt(stats[v.name]['start'], decimals)}->{_fmt(stats[v.name]['end'], decimals)}"
                      for v in shown)
    origin = f" from {segment.origin}" if segment.origin else ""
    return f"{segment.length} steps{origin}" + (f": {moves}" if moves else "")


__all__ = ["LABEL_HEIGHT", "SEPARATOR", "RenderError", "default_fps", "describe_segment", "make_render_env",
           "render_segment", "restore", "segment_stats", "side_by_side", "side_by_side_gif", "snapshot",
           "summarize_segment", "write_gif"]
