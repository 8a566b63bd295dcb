"""Preference segments, the Bradley-Terry loss, the ensemble reward model and LearnedReward."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from scipy.stats import spearmanr

from rewardsmith.preference.model import LearnedReward, RewardModel, RewardNet, bradley_terry_loss
from rewardsmith.preference.segments import PreferenceBatch, Segment, features, sample_segments
from rewardsmith.sources import RewardSource, Transitions


def true_reward(s: np.ndarray) -> np.ndarray:
    """``-|s - 0.3|`` summed over state dimensions: ``(..., S) -> (...)``."""
    return -np.abs(s - 0.3).sum(axis=-1)


def synthetic_batch(rng: np.random.Generator, n_pairs: int, dim: int = 2, length: int = 10,
                    traj_len: int = 40) -> tuple[PreferenceBatch, np.ndarray, np.ndarray]:
    """Random-walk trajectories in [-1, 1]^dim, one pair of segments per pair of trajectories, oracle labels."""
    segs = []
    for _ in range(2 * n_pairs):
        start = rng.uniform(-1, 1, dim)
        traj = np.clip(start + np.cumsum(rng.normal(0, 0.08, (traj_len, dim)), axis=0), -1, 1)
        segs.append(sample_segments(traj, length, 1, rng, rewards=true_reward(traj))[0])
    left, right = segs[:n_pairs], segs[n_pairs:]
    rl, rr = np.array([s.returns for s in left]), np.array([s.returns for s in right])
    label = np.where(rl > rr, 1.0, np.where(rl < rr, 0.0, 0.5))
    return PreferenceBatch.from_segments(left, right, label), rl, rr


@pytest.fixture(scope="module")
def trained():
    """A 3-member ensemble fitted on 400 oracle-labelled pairs, plus a 400-pair held-out batch."""
    rng = np.random.default_rng(0)
    train, _, _ = synthetic_batch(rng, 400)
    test, rl, rr = synthetic_batch(rng, 400)
    model = RewardModel(2, k=3, hidden=(32, 32), seed=0)
    hist = model.fit(train, epochs=60, lr=3e-3, val_fraction=0.2, patience=10, batch_size=64)
    return model, hist, test, rl, rr


# ------------------------------------------------------------------------------ loss

def test_bt_loss_matches_per_pair_loop():
    g = th.Generator().manual_seed(1)
    rl, rr = th.randn(17, 6, generator=g, dtype=th.float64), th.randn(17, 6, generator=g, dtype=th.float64)
    labels = th.rand(17, generator=g, dtype=th.float64)
    labels[:3] = th.tensor([1.0, 0.0, 0.5], dtype=th.float64)
    loop = []
    for i in range(17):  # by hand: P(left) = exp(R_l) / (exp(R_l) + exp(R_r))
        a, b = rl[i].sum().item(), rr[i].sum().item()
        p = np.exp(a) / (np.exp(a) + np.exp(b))
        y = labels[i].item()
        loop.append(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    got = bradley_terry_loss(rl, rr, labels)
    assert got.item() == pytest.approx(float(np.mean(loop)), rel=1e-10)


def test_bt_loss_tie_gradient_pushes_sums_together():
    rl = th.tensor([[1.0, 2.0, 0.5]], requires_grad=True)   # sum 3.5
    rr = th.tensor([[0.0, 0.5, 0.0]], requires_grad=True)   # sum 0.5
    bradley_terry_loss(rl, rr, th.tensor([0.5])).backward()
    # gradient descent lowers the larger sum and raises the smaller one
    assert (rl.grad > 0).all() and (rr.grad < 0).all()
    rl2, rr2 = th.ones(1, 3, requires_grad=True), th.ones(1, 3, requires_grad=True)
    bradley_terry_loss(rl2, rr2, th.tensor([0.5])).backward()
    assert th.allclose(rl2.grad, th.zeros(1, 3)) and th.allclose(rr2.grad, th.zeros(1, 3))


def test_bt_loss_shape_check():
    with pytest.raises(ValueError):
        bradley_terry_loss(th.zeros(3, 4), th.zeros(3, 5), th.zeros(3))


# -------------------------------------------------------------------------- segments

def test_segments_are_copies():
    traj = np.linspace(0, 1, 60).reshape(30, 2)
    acts = np.arange(30.0).reshape(30, 1)
    segs = sample_segments(traj, 5, 8, np.random.default_rng(0), actions=acts, rewards=true_reward(traj))
    before = [s.states.copy() for s in segs]
    traj[:] = -7.0
    acts[:] = -7.0
    for s, b in zip(segs, before):
        assert s.states.base is None and s.actions.base is None
        np.testing.assert_array_equal(s.states, b)
        assert (s.actions != -7.0).all()
        assert s.states.shape == (5, 2) and s.states.dtype == np.float64
        assert np.isfinite(s.returns)
    direct = Segment(traj[3:8])
    assert direct.states.base is None
    one_d = Segment(np.arange(4.0))
    assert one_d.states.shape == (4, 1) and one_d.states.base is None


def test_features_and_batch_checks():
    s = Segment(np.zeros((4, 3)), np.ones((4, 2)))
    assert features(s).shape == (4, 3)
    assert features(s, "state_action").shape == (4, 5)
    with pytest.raises(ValueError):
        features(Segment(np.zeros((4, 3))), "state_action")
    with pytest.raises(ValueError):
        PreferenceBatch(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)), np.array([1.0, 1.5]))
    with pytest.raises(ValueError):
        sample_segments(np.zeros((3, 2)), 5, 1, 0)


# ----------------------------------------------------------------------------- model

def test_ensemble_learns_synthetic_reward(trained):
    model, hist, test, rl, rr = trained
    assert model.accuracy(test) > 0.85
    pred = np.concatenate([model.predict_returns(test.left), model.predict_returns(test.right)])
    rho = spearmanr(pred, np.concatenate([rl, rr])).statistic
    assert rho > 0.8
    assert hist["n_val"] == 80 and hist["n_train"] == 320
    assert 1 <= hist["best_epoch"] <= len(hist["epoch"])
    assert len(hist["val_acc"]) == len(hist["epoch"]) == len(hist["train_loss"])
    # the bootstrap resamples make the members differ
    assert model.std(test.left.reshape(-1, 2)).mean() > 0


def test_conservative_not_above_mean(trained):
    model, _, test, _, _ = trained
    x = test.left.reshape(-1, 2)
    mean, cons = model.aggregate(x, "mean"), model.aggregate(x, "conservative", k=1.0)
    np.testing.assert_allclose(mean, model.predict(x))
    assert (cons <= mean).all()
    np.testing.assert_allclose(cons, mean - model.std(x))
    with pytest.raises(ValueError):
        model.aggregate(x, "median")


def test_save_load_round_trip(trained, tmp_path):
    model, _, test, _, _ = trained
    x = np.random.default_rng(3).uniform(-3, 3, (50, 2))
    path = tmp_path / "rm.pt"
    model.save(path)
    loaded = RewardModel.load(path)
    assert loaded.k == 3 and loaded.hidden == (32, 32)
    for a, b in zip(model.members, loaded.members):
        assert th.equal(a.norm_mean, b.norm_mean) and th.equal(a.norm_var, b.norm_var)
        assert b.norm_count.item() == a.norm_count.item() > 0
    np.testing.assert_array_equal(model.predict_members(x), loaded.predict_members(x))
    np.testing.assert_array_equal(model.predict_returns(test.left), loaded.predict_returns(test.left))


def test_normalization_is_a_buffer():
    net = RewardNet(2, hidden=(8,))
    x = np.random.default_rng(0).normal([5.0, -2.0], [3.0, 0.1], (1000, 2))
    net.update_normalization(x[:400])
    net.update_normalization(x[400:])  # running update equals one pass over all data
    np.testing.assert_allclose(net.norm_mean.numpy(), x.mean(0), rtol=1e-10)
    np.testing.assert_allclose(net.norm_var.numpy(), x.var(0), rtol=1e-10)
    assert {"norm_mean", "norm_var", "norm_count"} <= set(net.state_dict())


# ----------------------------------------------------------------------- as a source

def test_learned_reward_with_relabel():
    from rewardsmith.tasks import get_task
    from rewardsmith.wrappers import relabel

    task = get_task("point-goal")
    S = task.state_size
    model = RewardModel(S, k=2, hidden=(16,), seed=1)
    rng = np.random.default_rng(0)
    left, right = rng.normal(size=(20, 5, S)), rng.normal(size=(20, 5, S))
    model.fit(PreferenceBatch(left, right, (left.sum((1, 2)) > right.sum((1, 2))).astype(float)), epochs=3,
              val_fraction=0.0)
    src = LearnedReward(model, task)
    assert isinstance(src, RewardSource)
    assert src.components == ["learned", "learned_std"]
    states = rng.normal(size=(13, S))
    total, comps = relabel(src, states)
    assert total.shape == (13,) and comps.shape == (13, 2)
    np.testing.assert_allclose(total, model.predict(states))
    np.testing.assert_allclose(comps[:, 1], model.std(states))
    cons = LearnedReward(model, task, how="conservative", k=2.0)
    t2, c2 = cons.compute(Transitions.from_states(states))
    np.testing.assert_allclose(t2, c2[:, 0] - 2.0 * c2[:, 1])
    out = (np.empty(13), np.empty((13, 2)))
    assert src.compute(Transitions.from_states(states), out) is out
    with pytest.raises(ValueError):
        LearnedReward(RewardModel(S + 1, k=1), task)


def test_early_stopping_on_loss_is_an_option_and_rejects_unknown_criteria():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2, 5, 3))
    ret = x[..., 0].sum(-1)
    batch = PreferenceBatch(x[:, 0], x[:, 1], (ret[:, 0] > ret[:, 1]).astype(float))
    model = RewardModel(3, k=2, seed=0)
    hist = model.fit(batch, epochs=30, stop_on="loss")
    best = hist["best_epoch"]
    assert hist["val_loss"][best - 1] == min(hist["val_loss"])  # the kept epoch is the lowest held-out loss
    with pytest.raises(ValueError, match="stop_on"):
        model.fit(batch, stop_on="auc")
