"""SB3 callback adding an intrinsic bonus to the extrinsic reward, for PPO/A2C and SAC-style
off-policy algorithms.

On-policy: each step's transition is recorded in ``_on_step`` (the observation the policy saw,
the action, the next observation with ``info["terminal_observation"]`` where an episode ended,
terminated vs ``TimeLimit.truncated``). At the rollout's end (SB3 calls it after it computed
GAE) the bonuses are added to ``rollout_buffer.rewards`` and the returns and advantages are
RECOMPUTED, so the bonus propagates through the returns. Then the bonus's models are trained.

Off-policy: the bonus is added in place to ``locals["rewards"]`` in ``_on_step``, which SB3
then stores in the replay buffer (also to the VecNormalize original reward, which is what SB3
stores when the env is normalised); the models are trained every ``update_every`` steps on the
transitions since the last update.

Episodic bonuses are computed step by step in ``_on_step`` and reset for the envs whose
episode ended at that step.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback

from rewardsmith.callbacks import find_wrapper
from rewardsmith.intrinsic.base import Bonus, RunningStd, TransitionBatch


class IntrinsicCallback(BaseCallback):
    """Adds ``coef * (1 - decay) ** updates * bonus`` (bonus divided by its running std when
    ``normalize``) to the rewards the algorithm learns from.

    Args:
        bonus: the :class:`~rewardsmith.intrinsic.base.Bonus` (``setup`` is called here).
        coef: the bonus's scale.
        decay: the scale shrinks by ``(1 - decay)`` after each update of the bonus's models.
        normalize: divide bonuses by their running std.
        update_every: off-policy only, env steps (calls) between updates of the models.

    Attributes:
        last_bonus: the scaled bonuses of the latest rollout (on-policy) or step (off-policy).
        last_batch: the latest :class:`TransitionBatch` given to the bonus.
        updates: how many times the bonus's models were updated.
    """

    def __init__(self, bonus: Bonus, coef: float = 0.01, decay: float = 0.0, normalize: bool = True,
                 update_every: int = 256, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.bonus, self.coef, self.decay, self.normalize = bonus, coef, decay, normalize
        self.update_every = update_every
        self.std = RunningStd()
        self.updates = 0
        self.last_bonus: np.ndarray | None = None
        self.last_batch: TransitionBatch | None = None
        self._steps: list[TransitionBatch] = []
        self._set_up = False
        self._pending: dict[str, Any] | None = None
        self._episodic: list[np.ndarray] = []
        self._ext: list[np.ndarray] = []

    # ---- setup ---------------------------------------------------------------------------
    def _init_callback(self) -> None:
        from rewardsmith.wrappers import RewardVecEnv

        env = self.training_env
        self.on_policy = hasattr(self.model, "rollout_buffer") and isinstance(self.model.rollout_buffer, RolloutBuffer)
        self._reward_env = find_wrapper(env, RewardVecEnv)
        if not self._set_up:  # SB3 calls this at every learn(): the bonus's models are built once
            self.bonus.setup(env.observation_space, env.action_space, env.num_envs, self.model.device)
            self._set_up = True
            if self._pending is not None:
                self.load_state_dict(self._pending)

    def state_dict(self) -> dict[str, Any]:
        """The bonus's models, the running std of the bonuses and the update count (for checkpoints)."""
        if not self._set_up:
            return dict(self._pending or {})
        return {"bonus": self.bonus.state_dict(), "std": self.std.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; before the first ``learn`` it is applied once the bonus is set up."""
        if not self._set_up:
            self._pending = state
            return
        self._pending = None
        if state:
            self.bonus.load_state_dict(state["bonus"])
            self.std.load_state_dict(state["std"])
            self.updates = int(state["updates"])

    @property
    def current_coef(self) -> float:
        return self.coef * (1.0 - self.decay) ** self.updates

    # ---- recording -----------------------------------------------------------------------
    def _transition(self) -> TransitionBatch:
        loc = self.locals
        dones, infos = np.asarray(loc["dones"], dtype=bool), loc["infos"]
        obs = np.array(self.model._last_obs, dtype=np.float32)  # not yet replaced by new_obs
        next_obs = np.array(loc["new_obs"], dtype=np.float32)
        for i in np.flatnonzero(dones):
            term = infos[i].get("terminal_observation")
            if term is not None:
                next_obs[i] = term
        truncated = np.array([bool(d and info.get("TimeLimit.truncated", False)) for d, info in zip(dones, infos)])
        terminated = dones & ~truncated
        if self.on_policy:
            acts = loc["clipped_actions"] if isinstance(self.model.action_space, spaces.Box) else loc["actions"]
        else:
            acts = loc["actions"]
        acts = np.array(acts)
        if isinstance(self.model.action_space, spaces.Discrete):
            acts = acts.reshape(len(dones))
        states = None
        if self._reward_env is not None and self._reward_env.last_transitions is not None:
            states = np.array(self._reward_env.last_transitions.state, dtype=np.float64)
        elif all("reward_state" in info for info in infos):
            states = np.stack([np.asarray(info["reward_state"], dtype=np.float64) for info in infos])
        return TransitionBatch(obs[None], acts[None], next_obs[None], terminated[None], truncated[None],
                               None if states is None else states[None])

    def _episodic_step(self, batch: TransitionBatch) -> np.ndarray:
        b = np.asarray(self.bonus.compute(batch), dtype=np.float64).reshape(batch.shape)
        ended = batch.dones[0]
        if ended.any():
            self.bonus.reset(ended)
        return b

    def _on_rollout_start(self) -> None:
        if self.on_policy:
            self._steps, self._episodic = [], []

    def _on_step(self) -> bool:
        batch = self._transition()
        self._steps.append(batch)
        raw = self._episodic_step(batch) if self.bonus.episodic else None
        if self.on_policy:
            if raw is not None:
                self._episodic.append(raw)
            return True
        # off-policy: add to the reward SB3 is about to store
        if raw is None:
            raw = np.asarray(self.bonus.compute(batch), dtype=np.float64).reshape(batch.shape)
        scaled = self._scale(raw)[0]
        rewards = self.locals["rewards"]
        self._ext.append(np.array(rewards, dtype=np.float64))
        rewards += scaled.astype(rewards.dtype)
        vn = getattr(self.model, "_vec_normalize_env", None)
        if vn is not None and getattr(vn, "old_reward", None) is not None:
            vn.old_reward += scaled.astype(vn.old_reward.dtype)
        self.last_bonus, self.last_batch = scaled[None], batch
        if len(self._steps) >= self.update_every:
            self._update(TransitionBatch.concat(self._steps), np.concatenate(self._ext), None)
            self._steps, self._ext = [], []
        return True

    def _scale(self, raw: np.ndarray) -> np.ndarray:
        if self.normalize:
            self.std.update(raw)
            raw = self.std.normalize(raw)
        return self.current_coef * raw

    # ---- on-policy -----------------------------------------------------------------------
    def _on_rollout_end(self) -> None:
        if not self.on_policy or not self._steps:
            return
        buf = self.model.rollout_buffer
        batch = TransitionBatch.concat(self._steps)
        if batch.shape[0] != buf.rewards.shape[0]:  # rollout stopped early: leave it alone
            return
        raw = np.concatenate(self._episodic) if self.bonus.episodic else np.asarray(self.bonus.compute(batch))
        scaled = self._scale(raw.reshape(batch.shape).astype(np.float64))
        ext = buf.rewards.copy()
        buf.rewards += scaled.astype(buf.rewards.dtype)
        buf.compute_returns_and_advantage(last_values=self.locals["values"], dones=self.locals["dones"])
        self.last_bonus, self.last_batch = scaled, batch
        self._update(batch, ext, scaled)
        self._steps, self._episodic = [], []

    # ---- shared --------------------------------------------------------------------------
    def _update(self, batch: TransitionBatch, ext: np.ndarray, scaled: np.ndarray | None) -> None:
        coef = self.current_coef
        losses = self.bonus.update(batch)
        self.updates += 1
        bonus = scaled if scaled is not None else None
        if bonus is not None:
            self.logger.record("intrinsic/bonus_mean", float(np.mean(bonus)))
        elif self.last_bonus is not None:
            self.logger.record("intrinsic/bonus_mean", float(np.mean(self.last_bonus)))
        self.logger.record("intrinsic/coef", coef)
        self.logger.record("intrinsic/extrinsic_mean", float(np.mean(ext)))
        for k, v in losses.items():
            self.logger.record(f"intrinsic/{k}", float(v))
