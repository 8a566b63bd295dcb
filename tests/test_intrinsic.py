"""Intrinsic bonuses: the bonus goes through GAE, episodic memory resets at true episode ends,
next_obs is the terminal observation; RND learns; SAC stores the bonus; make_bonus errors."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv

from rewardsmith.intrinsic import Bonus, IntrinsicCallback, TransitionBatch, make_bonus


class CounterEnv(gym.Env):
    """obs = [steps in episode, 1]; terminates after ``length`` steps; reward 1."""

    observation_space = gym.spaces.Box(-1e3, 1e3, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int) -> None:
        self.length, self.t = length, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t, 1.0], np.float32), 1.0, self.t >= self.length, False, {}


def counter_venv() -> DummyVecEnv:
    # env 0 terminates after 3 steps, env 1 is truncated by a time limit after 4
    return DummyVecEnv([lambda: CounterEnv(3), lambda: TimeLimit(CounterEnv(100), 4)])


class EpisodeMemory(Bonus):
    """Episodic test bonus: remembers each next_obs of the episode; logs memory sizes."""

    name, episodic = "memory", True

    def setup(self, *args, **kw):
        super().setup(*args, **kw)
        self.memory = [[] for _ in range(self.n_envs)]
        self.sizes, self.batches = [], []

    def compute(self, batch):
        assert batch.shape[0] == 1
        for i in range(self.n_envs):
            self.memory[i].append(batch.next_obs[0, i])
        self.sizes.append([len(m) for m in self.memory])
        self.batches.append(batch)
        return np.array([[1.0 / len(m) for m in self.memory]])

    def reset(self, env_mask):
        for i in np.flatnonzero(env_mask):
            self.memory[i] = []


class FirstCoord(Bonus):
    name = "first"

    def compute(self, batch):
        return 0.1 * batch.next_obs[..., 0].astype(np.float64)


class Recorder(BaseCallback):
    def __init__(self):
        super().__init__()
        self.rollouts, self.step_rewards = [], []

    def _on_step(self):
        self.step_rewards.append(np.array(self.locals["rewards"], dtype=np.float64))
        return True

    def _on_rollout_end(self):
        if not hasattr(self.model, "rollout_buffer"):
            return
        buf = self.model.rollout_buffer
        self.rollouts.append({k: np.array(getattr(buf, k)) for k in ("rewards", "values", "episode_starts", "returns", "advantages")}
                             | {"last_values": self.locals["values"].cpu().numpy().ravel(), "dones": np.array(self.locals["dones"])})


def ppo(venv, callbacks, steps=32):
    model = PPO("MlpPolicy", venv, n_steps=steps, batch_size=steps * venv.num_envs, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=steps * venv.num_envs, callback=CallbackList(callbacks))
    return model


def gae(rewards, values, episode_starts, last_values, dones, gamma, lam):
    T = len(rewards)
    adv, last = np.zeros_like(rewards), 0.0
    for t in reversed(range(T)):
        if t == T - 1:
            nonterm, next_v = 1.0 - dones.astype(np.float64), last_values
        else:
            nonterm, next_v = 1.0 - episode_starts[t + 1], values[t + 1]
        delta = rewards[t] + gamma * next_v * nonterm - values[t]
        last = delta + gamma * lam * nonterm * last
        adv[t] = last
    return adv, adv + values


def test_bonus_goes_through_gae():
    before, after = Recorder(), Recorder()
    cb = IntrinsicCallback(FirstCoord(), coef=1.0, normalize=False)
    model = ppo(counter_venv(), [before, cb, after])
    ext, out = before.rollouts[0], after.rollouts[0]
    bonus = 0.1 * cb.last_batch.next_obs[..., 0]
    np.testing.assert_allclose(cb.last_bonus, bonus)
    np.testing.assert_allclose(out["rewards"], ext["rewards"] + bonus, rtol=1e-6)
    adv, ret = gae(ext["rewards"] + bonus, ext["values"], ext["episode_starts"], out["last_values"], out["dones"],
                   model.gamma, model.gae_lambda)
    np.testing.assert_allclose(out["advantages"], adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["returns"], ret, rtol=1e-4, atol=1e-5)
    assert not np.allclose(out["returns"], ext["returns"])  # the bonus changed the returns


def _on_policy(name: str):
    if name == "a2c":
        from stable_baselines3 import A2C

        return A2C, "MlpPolicy", {}
    contrib = pytest.importorskip("sb3_contrib")
    if name == "trpo":
        return contrib.TRPO, "MlpPolicy", {"batch_size": 64}
    return contrib.RecurrentPPO, "MlpLstmPolicy", {"batch_size": 64, "n_epochs": 1}


@pytest.mark.parametrize("algo", ["a2c", "trpo", "recurrent-ppo"])
def test_bonus_goes_through_gae_for_other_on_policy_algorithms(algo):
    """A2C and sb3-contrib's TRPO and RecurrentPPO share SB3's rollout machinery: same recompute."""
    cls, policy, kw = _on_policy(algo)
    before, after = Recorder(), Recorder()
    cb = IntrinsicCallback(FirstCoord(), coef=1.0, normalize=False)
    model = cls(policy, counter_venv(), n_steps=32, seed=0, device="cpu", **kw)
    model.learn(total_timesteps=64, callback=CallbackList([before, cb, after]))
    assert len(before.rollouts) == 1  # 32 steps x 2 envs: one rollout
    ext, out = before.rollouts[0], after.rollouts[0]
    bonus = 0.1 * cb.last_batch.next_obs[..., 0]
    np.testing.assert_allclose(out["rewards"], ext["rewards"] + bonus, rtol=1e-6)
    adv, ret = gae(out["rewards"], ext["values"], ext["episode_starts"], out["last_values"], out["dones"],
                   model.gamma, model.gae_lambda)
    np.testing.assert_allclose(out["advantages"], adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["returns"], ret, rtol=1e-4, atol=1e-5)
    assert not np.allclose(out["returns"], ext["returns"])


def test_episodic_memory_resets_at_true_episode_ends():
    bonus = EpisodeMemory()
    ppo(counter_venv(), [IntrinsicCallback(bonus, coef=1.0, normalize=False)], steps=24)
    sizes = np.array(bonus.sizes)
    k = np.arange(len(sizes))
    np.testing.assert_array_equal(sizes[:, 0], k % 3 + 1)
    np.testing.assert_array_equal(sizes[:, 1], k % 4 + 1)
    batch = TransitionBatch.concat(bonus.batches)
    np.testing.assert_array_equal(batch.terminated[:, 0], k % 3 == 2)
    np.testing.assert_array_equal(batch.truncated[:, 1], k % 4 == 3)
    assert not batch.truncated[:, 0].any() and not batch.terminated[:, 1].any()


def test_next_obs_is_terminal_observation():
    bonus = EpisodeMemory()
    ppo(counter_venv(), [IntrinsicCallback(bonus, coef=1.0, normalize=False)], steps=24)
    batch = TransitionBatch.concat(bonus.batches)
    k = np.arange(batch.shape[0])
    # next_obs counts the steps of the episode: the terminal one is the length, never the reset 0
    np.testing.assert_array_equal(batch.next_obs[:, 0, 0], k % 3 + 1)
    np.testing.assert_array_equal(batch.next_obs[:, 1, 0], k % 4 + 1)
    np.testing.assert_array_equal(batch.obs[:, 0, 0], k % 3)  # obs after an end is the reset one


def test_rnd_bonus_of_repeated_states_decreases():
    rnd = make_bonus("rnd", lr=1e-3)
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    rnd.setup(space, gym.spaces.Discrete(2), 2, "cpu")
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (16, 2, 4)).astype(np.float32)
    batch = TransitionBatch(obs, np.zeros((16, 2)), obs, np.zeros((16, 2), bool), np.zeros((16, 2), bool))
    first = rnd.compute(batch).mean()
    for _ in range(30):
        rnd.update(batch)
    assert rnd.compute(batch).shape == (16, 2)
    assert rnd.compute(batch).mean() < 0.5 * first


@pytest.mark.parametrize("name", ["icm", "simhash"])
def test_other_bonuses_run(name):
    bonus = make_bonus(name)
    ppo(counter_venv(), [IntrinsicCallback(bonus)], steps=16)


class Constant(Bonus):
    name = "constant"

    def compute(self, batch):
        return np.ones(batch.shape)


def test_sac_stores_bonus_in_replay_rewards():
    venv = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    rec = Recorder()
    model = SAC("MlpPolicy", venv, learning_starts=1000, seed=0, device="cpu")
    model.learn(total_timesteps=20, callback=CallbackList([rec, IntrinsicCallback(Constant(), coef=0.5, normalize=False, update_every=8)]))
    ext = np.array(rec.step_rewards)[:, 0]
    np.testing.assert_allclose(model.replay_buffer.rewards[:20, 0], ext + 0.5, rtol=1e-5)


def test_make_bonus_unknown_name():
    with pytest.raises(ValueError, match="unknown intrinsic bonus 'nope'.*rnd"):
        make_bonus("nope")


def test_simhash_offsets_tell_near_from_far_states_in_one_direction():
    """Hyperplanes through the origin only see directions (a 2-D state gets at most 2k sectors);
    the offset hash cuts space into local cells, so a first visit far out is new again."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 2)).astype(np.float32)
    near_far = np.array([[0.1, 0.1], [3.0, 3.0]], np.float32)
    space = gym.spaces.Box(-5, 5, (2,), np.float32)
    paper, offset = make_bonus("simhash", offset=False), make_bonus("simhash")
    for h in (paper, offset):
        h.setup(space, gym.spaces.Discrete(3), 1)
    assert len(set(paper.hashes(x))) <= 2 * paper.k < len(set(offset.hashes(x)))
    assert len(set(paper.hashes(near_far))) == 1 and len(set(offset.hashes(near_far))) == 2
