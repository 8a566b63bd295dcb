"""Potential-based shaping leaves optimal policies unchanged (Ng et al. 1999); a bonus does not."""

from types import SimpleNamespace

import numpy as np
import pytest

from rewardsmith.errors import RewardsmithError
from rewardsmith.shaping import PotentialShaping
from rewardsmith.sources import Transitions

N, GOAL, GAMMA = 5, 24, 0.9
MOVES = [(0, 1), (1, 0), (0, -1), (-1, 0)]
TASK = SimpleNamespace(name="grid", state_size=1)


def _step(s, a):
    r, c = divmod(s, N)
    dr, dc = MOVES[a]
    r, c = min(max(r + dr, 0), N - 1), min(max(c + dc, 0), N - 1)
    return r * N + c


S = np.repeat(np.arange(N * N), 4)
A = np.tile(np.arange(4), N * N)
S2 = np.array([_step(s, a) for s, a in zip(S, A)])
TERM = S2 == GOAL
R = np.where(TERM, 1.0, -0.01)


def _optimal_sets(r):
    q = np.zeros((N * N, 4))
    for _ in range(2000):
        v = q.max(1)
        q = (r + GAMMA * np.where(TERM, 0.0, v[S2])).reshape(N * N, 4)
    best = np.isclose(q, q.max(1, keepdims=True), atol=1e-9)
    return np.delete(best, GOAL, axis=0)


def _shaping(phi_table):
    src = PotentialShaping(lambda x: phi_table[x[:, 0].astype(int)], gamma=GAMMA, task=TASK)
    t = Transitions.from_states(S2[:, None].astype(float), prev_state=S[:, None].astype(float),
                                terminated=TERM)
    total, comps = src.compute(t)
    assert src.components == ["shaping", "potential"]
    np.testing.assert_allclose(comps[:, 0], total)
    return total


def test_potential_shaping_keeps_optimal_policy_and_bonus_changes_it():
    base = _optimal_sets(R)
    rng = np.random.default_rng(0)
    mags = []
    for _ in range(5):
        f = _shaping(rng.normal(0, 1, N * N))
        mags.append(np.abs(f).mean())
        assert (_optimal_sets(R + f) == base).all()
    bonus = np.where(S2 == 0, max(mags), 0.0)  # a reward for entering a corner: not a potential
    assert not (_optimal_sets(R + bonus) == base).all()


def test_terminated_vs_truncated():
    src = PotentialShaping(lambda x: x[:, 0], gamma=0.5, task=TASK)
    st = np.array([[4.0], [4.0], [4.0]])
    prev = np.array([[2.0], [2.0], [2.0]])
    t = Transitions.from_states(st, prev, terminated=np.array([True, False, False]),
                                truncated=np.array([False, True, False]))
    total, _ = src.compute(t)
    np.testing.assert_allclose(total, [-2.0, 0.0, 0.0])


def test_gamma_unset_raises_then_set_gamma():
    src = PotentialShaping(lambda x: x[:, 0], task=TASK)
    t = Transitions.from_states(np.ones((2, 1)))
    with pytest.raises(RewardsmithError, match="gamma"):
        src.compute(t)
    src.set_gamma(1.0)
    np.testing.assert_allclose(src.compute(t)[0], 0.0)
