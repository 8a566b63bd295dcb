"""Episodic bonuses: NGU's kNN novelty (revisits score low, per-env resets), E3B (elliptical
bonus, Sherman-Morrison inverse), NGU (episodic x clipped RND modulation), Discrete actions,
and PPO training through the Trainer's callback."""
from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest

from rewardsmith.intrinsic import E3B, NGU, EpisodicNovelty, TransitionBatch, make_bonus

OBS = gym.spaces.Box(-100, 100, (2,), np.float32)


def step(obs, next_obs, actions=None) -> TransitionBatch:
    """A ``(1, n)`` batch from per-env lists of observations."""
    o = np.asarray(obs, np.float32)[None]
    o2 = np.asarray(next_obs, np.float32)[None]
    n = o.shape[1]
    a = np.zeros((1, n, 2), np.float32) if actions is None else np.asarray(actions)[None]
    return TransitionBatch(o, a, o2, np.zeros((1, n), bool), np.zeros((1, n), bool))


def test_episodic_revisits_score_low_and_reset_is_per_env():
    bonus = EpisodicNovelty(embedding="obs")
    bonus.setup(OBS, gym.spaces.Box(-1, 1, (2,)), 2)
    start, b, c = [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]
    first = bonus.compute(step([start, start], [b, b]))[0]
    bonus.compute(step([b, b], [c, c]))
    revisit = bonus.compute(step([c, c], [b, b]))[0]
    far = bonus.compute(step([b, b], [[10.0, 10.0]] * 2))[0]
    assert np.all(revisit < 0.5 * far) and np.all(revisit < 0.5 * first)
    assert bonus.sizes.tolist() == [5, 5]  # start + the four scored next_obs
    bonus.reset(np.array([True, False]))
    again = bonus.compute(step([[-5.0, 5.0]] * 2, [b, b]))[0]
    assert again[0] > 5 * again[1]  # env 0 forgot b, env 1 still remembers it
    assert again[1] < 0.5 * far[1]
    assert bonus.sizes.tolist() == [2, 6]


def test_episodic_kernel_matches_the_formula():
    bonus = EpisodicNovelty(embedding="obs", k=2)
    bonus.setup(OBS, gym.spaces.Box(-1, 1, (2,)), 1)
    for p in ([1.0, 0.0], [3.0, 0.0], [0.0, 5.0]):  # memory: [0,0] then these
        bonus.compute(step([[0.0, 0.0]], [p]))
    stats = copy.deepcopy(bonus.dist_mean)
    x = np.array([1.0, 1.0])
    d2 = np.sort(((np.array([[0, 0], [1, 0], [3, 0], [0, 5]]) - x) ** 2).sum(1))[:2]
    stats.update(d2)
    kern = 0.001 / (np.maximum(d2 / stats.mean - 0.008, 0) + 0.001)
    expected = 1 / (np.sqrt(kern.sum()) + 0.001)
    np.testing.assert_allclose(bonus.compute(step([[0.0, 5.0]], [x]))[0, 0], expected, rtol=1e-9)


def test_episodic_memory_is_capped():
    bonus = EpisodicNovelty(embedding="obs", capacity=4)
    bonus.setup(OBS, gym.spaces.Box(-1, 1, (2,)), 1)
    for t in range(10):
        bonus.compute(step([[t, 0.0]], [[t + 1.0, 0.0]]))
    assert bonus.sizes.tolist() == [4]
    np.testing.assert_array_equal(np.sort(bonus.memory[0, :, 0]), [7, 8, 9, 10])  # the oldest dropped


def test_e3b_repeated_embedding_decreases_and_resets():
    e3b = E3B()
    e3b.setup(OBS, gym.spaces.Box(-1, 1, (2,)), 2)
    o = [[0.5, -0.5], [0.2, 0.3]]
    vals = np.array([e3b.compute(step(o, o))[0] for _ in range(6)])
    assert np.all(np.diff(vals, axis=0) < 0) and np.all(vals > 0)
    e3b.reset(np.array([True, False]))
    after = e3b.compute(step(o, o))[0]
    np.testing.assert_allclose(after[0], vals[0, 0], rtol=1e-9)
    assert after[1] < vals[-1, 1]


def test_e3b_sherman_morrison_equals_the_explicit_inverse():
    e3b = E3B(ridge=0.1)
    e3b.setup(OBS, gym.spaces.Box(-1, 1, (2,)), 2)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(20):
        obs = rng.normal(size=(2, 2))
        phi = e3b.idm.embed(obs)
        cov = [0.1 * np.eye(e3b.latent) + sum((np.outer(p[i], p[i]) for p in seen), np.zeros((e3b.latent,) * 2))
               for i in range(2)]
        b = e3b.compute(step(obs, obs))[0]
        np.testing.assert_allclose(b, [phi[i] @ np.linalg.inv(cov[i]) @ phi[i] for i in range(2)], rtol=1e-6)
        seen.append(phi)
    for i in range(2):
        cov = 0.1 * np.eye(e3b.latent) + sum(np.outer(p[i], p[i]) for p in seen)
        np.testing.assert_allclose(e3b.cov_inverse[i], np.linalg.inv(cov), atol=1e-6, rtol=1e-6)


def test_ngu_is_episodic_times_clipped_rnd_modulation():
    ngu = NGU(embedding="obs")
    ngu.setup(OBS, gym.spaces.Box(-1, 1, (2,)), 2)
    rng = np.random.default_rng(1)
    for _ in range(5):
        o = rng.normal(size=(2, 2))
        ngu.compute(step(o, rng.normal(size=(2, 2))))
    ngu.update(step(o, o))
    batch = step(o, [[3.0, 3.0], o[1]])
    episodic = copy.deepcopy(ngu.novelty).compute(batch)
    err = ngu.rnd.compute(batch).astype(np.float64)
    stats = copy.deepcopy(ngu.err_stats)
    stats.update(err)
    alpha = 1 + (err - stats.mean) / stats.std
    out = ngu.compute(batch)
    np.testing.assert_allclose(out, episodic * np.clip(alpha, 1, 5), rtol=1e-9)
    assert np.all(out > 0)


@pytest.mark.parametrize("name", ["episodic", "e3b"])
def test_discrete_actions(name):
    bonus = make_bonus(name)
    bonus.setup(OBS, gym.spaces.Discrete(3), 2)
    rng = np.random.default_rng(0)
    T = 8
    obs = rng.normal(size=(T + 1, 2, 2)).astype(np.float32)
    acts = rng.integers(0, 3, (T, 2))
    out = np.concatenate([bonus.compute(step(obs[t], obs[t + 1], acts[t])) for t in range(T)])
    assert out.shape == (T, 2) and np.all(np.isfinite(out)) and np.all(out > 0)
    batch = TransitionBatch(obs[:-1], acts, obs[1:], np.zeros((T, 2), bool), np.zeros((T, 2), bool))
    losses = bonus.update(batch)
    assert np.isfinite(losses["idm_loss"])
    state = bonus.state_dict()
    other = make_bonus(name)
    other.setup(OBS, gym.spaces.Discrete(3), 2)
    other.load_state_dict(state)
    np.testing.assert_allclose(other.idm.embed(obs[0]), bonus.idm.embed(obs[0]))


@pytest.mark.parametrize("name", ["episodic", "e3b", "ngu"])
def test_trains_with_ppo_through_the_callback(name):
    from rewardsmith.trainer import Trainer

    with Trainer("point-maze", "sparse", n_envs=2, budget=512, intrinsic=name) as t:
        t.learn(512)
        cb = t.intrinsic
        assert cb.updates >= 1 and cb.last_bonus is not None and cb.last_bonus.shape == (256, 2)
        assert np.all(np.isfinite(cb.last_bonus)) and float(np.mean(cb.last_bonus)) > 0
        losses = cb.bonus.update(cb.last_batch)
        assert losses and all(np.isfinite(v) for v in losses.values())
