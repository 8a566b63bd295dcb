"""Replay buffers that can be relabelled with another reward (warm starts of off-policy learners).

An SB3 replay buffer holds observations, actions and rewards, but a reward program reads the
task's *reward states* (positions, velocities, ... of the simulator), which observations do not
always contain. :class:`ReplayStates` records, beside the buffer and aligned with its slots, each
stored transition's reward states (previous state, action, state, terminated, truncated) as
:class:`~rewardsmith.wrappers.RewardVecEnv` handed them to the reward. :func:`relabel_replay`
then recomputes every stored reward with a new source through the compiled batch path (LaRes
style: a new candidate reuses the previous best's experience instead of starting empty).

SB3 calls a callback's ``_on_step`` after ``env.step`` and before the transition is stored at
``replay_buffer.pos``, so the states of that step go to the same slot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rewardsmith.errors import TrainingError
from rewardsmith.sources import Transitions

STATES_FILE = "replay_states.npz"


class ReplayStates(BaseCallback):
    """Records the reward states of every transition an off-policy learner stores in its buffer."""

    def __init__(self, reward_env: Any) -> None:
        super().__init__()
        self.reward_env = reward_env
        self.arrays: dict[str, np.ndarray] | None = None

    def _buffers(self, t: Transitions, rows: int, n_envs: int) -> dict[str, np.ndarray]:
        s = t.state.shape[1]
        a = 0 if t.action is None else int(np.prod(np.shape(t.action)[1:]))
        return {"prev_state": np.zeros((rows, n_envs, s)), "state": np.zeros((rows, n_envs, s)),
                "action": np.zeros((rows, n_envs, a)), "terminated": np.zeros((rows, n_envs), dtype=bool),
                "truncated": np.zeros((rows, n_envs), dtype=bool)}

    def _grow(self, rows: int) -> None:
        """Make room for ``rows`` slots (arrays grow by doubling up to the buffer's size, not at once)."""
        assert self.arrays is not None
        have = len(self.arrays["state"])
        if rows <= have:
            return
        new = max(rows, 2 * have)
        for k, v in self.arrays.items():
            grown = np.zeros((new, *v.shape[1:]), dtype=v.dtype)
            grown[:have] = v
            self.arrays[k] = grown

    def load(self, directory: str | Path) -> None:
        """Start from the states saved beside a loaded replay buffer (continuations, warm starts)."""
        path = Path(directory) / STATES_FILE
        if path.is_file():
            with np.load(path) as data:
                self.arrays = {k: np.array(data[k]) for k in data.files}

    def _on_step(self) -> bool:
        t = self.reward_env.last_transitions
        buffer = getattr(self.model, "replay_buffer", None)
        if t is None or buffer is None:
            return True
        if self.arrays is None:
            self.arrays = self._buffers(t, min(1024, buffer.buffer_size), buffer.n_envs)
        pos = buffer.pos
        self._grow(min(buffer.buffer_size, pos + 1))
        self.arrays["prev_state"][pos] = t.prev_state
        self.arrays["state"][pos] = t.state
        if t.action is not None and self.arrays["action"].shape[2]:
            self.arrays["action"][pos] = np.asarray(t.action).reshape(len(t.state), -1)
        self.arrays["terminated"][pos] = t.terminated
        self.arrays["truncated"][pos] = t.truncated
        return True

    def save(self, directory: str | Path, filled: int) -> Path | None:
        """Write the first ``filled`` slots to ``directory/replay_states.npz`` (atomically)."""
        if self.arrays is None:
            return None
        path = Path(directory) / STATES_FILE
        tmp = path.with_name(f".{STATES_FILE}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **{k: v[:filled] for k, v in self.arrays.items()})
        os.replace(tmp, path)
        return path


def relabel_replay(model: Any, source: Any, directory: str | Path) -> int:
    """Recompute the rewards in ``model``'s (loaded) replay buffer with ``source``.

    The reward states come from ``directory/replay_states.npz``. Returns the number of
    transitions relabelled; TrainingError when the states are missing or do not match the buffer.
    """
    path = Path(directory) / STATES_FILE
    if not path.is_file():
        raise TrainingError(f"no {STATES_FILE} in {directory}: the replay buffer cannot be relabelled")
    buffer = model.replay_buffer
    filled = buffer.buffer_size if buffer.full else buffer.pos
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    if arrays["state"].shape[:2] != (filled, buffer.n_envs):
        raise TrainingError(f"{path} holds {arrays['state'].shape[:2]} transitions, the buffer "
                            f"{(filled, buffer.n_envs)}: not the same training")
    return relabel_arrays(buffer, source, arrays)


def relabel_arrays(buffer: Any, source: Any, arrays: dict[str, np.ndarray]) -> int:
    """Recompute the rewards of ``buffer``'s filled slots with ``source`` from the reward states in
    ``arrays`` (:attr:`ReplayStates.arrays`, aligned with the buffer's slots); the count relabelled.

    This is PEBBLE's relabelling: after each update of a learned reward the whole buffer gets
    the new reward, so the critic never learns from stale values.
    """
    from rewardsmith.wrappers import relabel

    filled = buffer.buffer_size if buffer.full else buffer.pos
    if filled == 0:
        return 0
    if len(arrays["state"]) < filled or arrays["state"].shape[1] != buffer.n_envs:
        raise TrainingError(f"the reward states hold {arrays['state'].shape[:2]} transitions, the buffer "
                            f"{(filled, buffer.n_envs)}: not the same training")
    flat = {k: v[:filled].reshape(filled * buffer.n_envs, *v.shape[2:]) for k, v in arrays.items()}
    action = flat["action"] if flat["action"].shape[-1] else None
    t = Transitions(flat["prev_state"], action, flat["state"], flat["terminated"], flat["truncated"])
    rewards, _ = relabel(source, t)
    buffer.rewards[:filled] = np.asarray(rewards, dtype=buffer.rewards.dtype).reshape(filled, buffer.n_envs)
    return int(filled * buffer.n_envs)


__all__ = ["STATES_FILE", "ReplayStates", "relabel_arrays", "relabel_replay"]
