"""Scripted (B-Pref) teachers: each kind checked numerically on constructed returns.

Label convention under test: 1.0 = left preferred, 0.0 = right, 0.5 = equal, NaN = skipped.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardsmith.preference.teachers import (
    TEACHER_KINDS,
    BPrefTeacher,
    ScriptedTeacher,
    Teacher,
    oracle_labels,
    preference_accuracy,
    segment_returns,
)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _random_pairs(n=20_000, length=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, length)), rng.normal(size=(n, length))


# ---------------------------------------------------------------------------------- protocol


def test_every_kind_is_a_teacher_and_returns_float_labels():
    left, right = _random_pairs(50)
    for kind in TEACHER_KINDS:
        t = ScriptedTeacher(kind, seed=0)
        assert isinstance(t, Teacher)
        out = t.label(left, right)
        assert out.shape == (50,) and out.dtype == np.float64
    assert isinstance(BPrefTeacher(), Teacher)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="unknown teacher kind"):
        ScriptedTeacher("sloppy")
    with pytest.raises(ValueError, match="same shape"):
        ScriptedTeacher().label(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="finite"):
        ScriptedTeacher().label(np.array([[np.nan]]), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="probability"):
        ScriptedTeacher("mistake", eps_mistake=1.5)
    with pytest.raises(ValueError, match="gamma"):
        BPrefTeacher(gamma=0.0)
    with pytest.raises(ValueError, match="return_range"):
        BPrefTeacher(return_range=(1.0, 1.0))


# ------------------------------------------------------------------------------------ oracle


def test_oracle_is_the_sign_of_the_return_difference_exactly():
    left = np.array([[1.0, 2.0], [0.0, 0.0], [-1.0, 0.5], [3.0, -3.0], [0.25, 0.25]])
    right = np.array([[0.0, 2.9], [0.0, 0.1], [-1.0, 0.4], [0.0, 0.0], [0.5, 0.0]])
    # returns: 3 vs 2.9, 0 vs 0.1, -0.5 vs -0.6, 0 vs 0 (tie), 0.5 vs 0.5 (tie)
    expected = np.array([1.0, 0.0, 1.0, 0.5, 0.5])
    np.testing.assert_array_equal(ScriptedTeacher("oracle").label(left, right), expected)
    np.testing.assert_array_equal(oracle_labels(left, right), expected)

    left, right = _random_pairs(2000)
    diff = left.sum(1) - right.sum(1)
    np.testing.assert_array_equal(ScriptedTeacher("oracle").label(left, right), (diff > 0).astype(float))
    # 1-D input: N one-step segments
    np.testing.assert_array_equal(ScriptedTeacher().label([2.0, -1.0], [1.0, 0.0]), [1.0, 0.0])


# ----------------------------------------------------------------------------------- mistake


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_mistake_flips_the_oracle_with_probability_eps(eps):
    n = 20_000
    left, right = _random_pairs(n, seed=1)
    truth = oracle_labels(left, right)
    labels = ScriptedTeacher("mistake", eps_mistake=eps, seed=3).label(left, right)
    assert set(np.unique(labels)) <= {0.0, 1.0}
    rate = np.mean(labels != truth)
    sigma = math.sqrt(eps * (1 - eps) / n)
    assert abs(rate - eps) < 3 * sigma, (rate, eps, sigma)
    assert preference_accuracy(labels, truth) == pytest.approx(1 - rate)


def test_mistake_never_flips_a_tie():
    z = np.zeros((100, 3))
    labels = ScriptedTeacher("mistake", eps_mistake=1.0, seed=0).label(z, z)
    assert np.all(labels == 0.5)


# --------------------------------------------------------------------------------- boltzmann


def _graded_batch(reps=4000):
    """One-step pairs: left reward x in {-1, -.5, 0, .5, 1}, right 0. Returns span [-1, 1]."""
    xs = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    left = np.repeat(xs, reps)[:, None]
    return xs, left, np.zeros_like(left)


def test_boltzmann_p_left_matches_the_scaled_sigmoid():
    beta, reps = 4.0, 4000
    xs, left, right = _graded_batch(reps)
    labels = ScriptedTeacher("boltzmann", beta=beta, seed=7).label(left, right)
    assert set(np.unique(labels)) <= {0.0, 1.0}
    scale = 2.0  # max - min of all segment returns in the batch
    for i, x in enumerate(xs):
        p = _sigmoid(beta * x / scale)
        freq = labels[i * reps:(i + 1) * reps].mean()
        sigma = math.sqrt(p * (1 - p) / reps)
        assert abs(freq - p) < 3.5 * sigma, (x, freq, p)

    # a fixed return_scale replaces the batch range
    labels = ScriptedTeacher("stochastic", beta=beta, return_scale=4.0, seed=7).label(left, right)
    for i, x in enumerate(xs):
        p = _sigmoid(beta * x / 4.0)
        sigma = math.sqrt(p * (1 - p) / reps)
        assert abs(labels[i * reps:(i + 1) * reps].mean() - p) < 3.5 * sigma


def test_boltzmann_is_invariant_to_reward_magnitude():
    """The scaling pitfall: x1000 rewards must not make the teacher near-deterministic."""
    xs, left, right = _graded_batch(2000)
    small = ScriptedTeacher("boltzmann", beta=2.0, seed=11).label(left, right)
    big = ScriptedTeacher("boltzmann", beta=2.0, seed=11).label(1000 * left, 1000 * right)
    np.testing.assert_array_equal(small, big)
    half = xs[3]  # x = 0.5: P(left) = sigmoid(2 * 0.5 / 2) ~ 0.62 at either magnitude
    block = big[3 * 2000:4 * 2000]
    assert 0.55 < block.mean() < 0.69, half
    # what B-Pref's unscaled temperature would do: with a fixed scale of 1, x1000 returns are
    # labelled (almost) deterministically
    raw = ScriptedTeacher("boltzmann", beta=2.0, return_scale=1.0, seed=11).label(1000 * left, 1000 * right)
    assert raw[3 * 2000:4 * 2000].mean() == 1.0


def test_boltzmann_on_a_constant_batch_is_a_coin_flip():
    z = np.ones((4000, 2))
    labels = ScriptedTeacher("boltzmann", beta=5.0, seed=0).label(z, z)
    assert abs(labels.mean() - 0.5) < 3 * math.sqrt(0.25 / 4000)


# ------------------------------------------------------------------------------ skip / equal


def test_skip_marks_queries_whose_best_return_is_not_above_the_threshold():
    left = np.array([[0.2, 0.3], [0.5, 0.0], [1.0, 0.0], [-2.0, 0.0], [0.9, 0.2]])
    right = np.array([[0.4, 0.4], [1.5, 0.0], [0.2, 0.0], [-3.0, 0.0], [0.0, 0.0]])
    # returns: .5 vs .8 (skip), .5 vs 1.5 (keep), 1 vs .2 (max == threshold: skip, as B-Pref keeps
    # only max > threshold), -2 vs -3 (skip), 1.1 vs 0 (keep)
    labels = ScriptedTeacher("skip", skip_threshold=1.0).label(left, right)
    np.testing.assert_array_equal(np.isnan(labels), [True, False, True, True, False])
    np.testing.assert_array_equal(labels[[1, 4]], [0.0, 1.0])


def test_equal_marks_close_returns_as_ties():
    left = np.array([[1.0], [1.0], [1.0], [1.0], [5.0]])
    right = np.array([[1.09], [0.95], [1.1], [2.0], [5.0]])
    labels = ScriptedTeacher("equal", equal_threshold=0.1).label(left, right)
    # |diff| = .09 (< .1: tie), .05 (tie), .1 (not < .1: oracle -> right), 1 (right), 0 (tie)
    np.testing.assert_allclose(labels, [0.5, 0.5, 0.0, 0.0, 0.5])


# ------------------------------------------------------------------------------------ myopic


def test_myopic_prefers_the_segment_whose_reward_comes_late():
    length, gamma = 10, 0.9
    left = np.zeros((1, length))
    right = np.zeros((1, length))
    left[0, -1] = 1.0  # reward at the last step: weight gamma**0 = 1
    right[0, 0] = 1.05  # slightly more reward, but at the first step: weight gamma**9
    # totals: 1.0 vs 1.05 -> the oracle prefers the right segment
    assert ScriptedTeacher("oracle").label(left, right)[0] == 0.0
    # myopic returns: 1.0 vs 1.05 * 0.9**9 = 0.4067915...
    np.testing.assert_allclose(segment_returns(left, gamma), [1.0])
    np.testing.assert_allclose(segment_returns(right, gamma), [1.05 * 0.9**9])
    assert 1.05 * 0.9**9 == pytest.approx(0.4067915, abs=1e-7)
    assert ScriptedTeacher("myopic", gamma_myopic=gamma).label(left, right)[0] == 1.0
    # swapping the sides swaps the label
    assert ScriptedTeacher("myopic", gamma_myopic=gamma).label(right, left)[0] == 0.0


def test_myopic_weights_match_bpref_loop():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(7, 6))
    temp = r.copy()
    for index in range(r.shape[1] - 1):  # B-Pref's SimTeacher loop
        temp[:, : index + 1] *= 0.8
    np.testing.assert_allclose(segment_returns(r, 0.8), temp.sum(1))
    np.testing.assert_allclose(segment_returns(r, 1.0), r.sum(1))


# ---------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("kind", ["boltzmann", "mistake"])
def test_seeded_teachers_are_reproducible(kind):
    left, right = _random_pairs(500, seed=5)
    a = ScriptedTeacher(kind, eps_mistake=0.3, seed=42)
    b = ScriptedTeacher(kind, eps_mistake=0.3, seed=42)
    first = a.label(left, right)
    np.testing.assert_array_equal(first, b.label(left, right))
    np.testing.assert_array_equal(a.label(left, right), b.label(left, right))  # same 2nd call
    other = ScriptedTeacher(kind, eps_mistake=0.3, seed=43).label(left, right)
    assert np.any(first != other)
    c = BPrefTeacher(beta=5.0, gamma=0.9, eps=0.1, skip_frac=0.2, equal_frac=0.05, seed=1)
    d = BPrefTeacher(beta=5.0, gamma=0.9, eps=0.1, skip_frac=0.2, equal_frac=0.05, seed=1)
    np.testing.assert_array_equal(c.label(left, right), d.label(left, right))


# ------------------------------------------------------------------------------ BPrefTeacher


def test_bpref_teacher_defaults_to_the_oracle():
    left, right = _random_pairs(1000, seed=2)
    np.testing.assert_array_equal(BPrefTeacher(seed=0).label(left, right), oracle_labels(left, right))


def test_bpref_teacher_thresholds_are_fractions_of_the_return_range():
    # returns 0, 2, 4, 6, 8, 10 -> range [0, 10]
    left = np.array([[0.0], [4.0], [8.0]])
    right = np.array([[2.0], [6.0], [10.0]])
    t = BPrefTeacher(skip_frac=0.25, equal_frac=0.1)
    assert t.thresholds(left, right) == (2.5, 1.0)
    labels = t.label(left, right)
    # pair 0: max 2 <= 2.5 -> skipped; others: |diff| 2 >= 1 -> oracle (right)
    assert np.isnan(labels[0]) and list(labels[1:]) == [0.0, 0.0]
    # the same thresholds at any reward magnitude, and shifted returns (negative rewards)
    np.testing.assert_array_equal(t.label(1000 * left - 7e3, 1000 * right - 7e3), labels)
    assert BPrefTeacher(equal_frac=0.3).label(left, right).tolist() == [0.5, 0.5, 0.5]
    fixed = BPrefTeacher(skip_frac=0.5, return_range=(0.0, 20.0))
    assert fixed.thresholds(left, right) == (10.0, None)
    assert np.isnan(fixed.label(left, right)).all()


def test_bpref_teacher_applies_the_steps_in_bpref_order():
    # equal pairs are 0.5 even with eps = 1 (the tie is set after the flip); others are flipped;
    # skipped pairs stay NaN
    left = np.array([[0.0], [5.0], [10.0], [3.0]])
    right = np.array([[0.5], [0.0], [9.5], [8.0]])
    # returns range [0, 10]; skip if max <= 1; equal if |diff| < 1
    t = BPrefTeacher(eps=1.0, skip_frac=0.1, equal_frac=0.1, seed=0)
    labels = t.label(left, right)
    assert np.isnan(labels[0])  # 0 vs .5: skipped (and would be equal)
    assert labels[1] == 0.0  # oracle left, flipped
    assert labels[2] == 0.5  # equal wins over the flip
    assert labels[3] == 1.0  # oracle right, flipped

    # "equal" is judged on plain returns, the comparison on myopic ones
    length = 10
    late = np.zeros((1, length))
    early = np.zeros((1, length))
    late[0, -1], early[0, 0] = 1.0, 1.05
    assert BPrefTeacher(gamma=0.9).label(late, early)[0] == 1.0
    assert BPrefTeacher(gamma=1.0).label(late, early)[0] == 0.0


def test_bpref_teacher_boltzmann_matches_sigmoid_and_is_scale_free():
    beta, reps = 3.0, 4000
    xs, left, right = _graded_batch(reps)
    t = BPrefTeacher(beta=beta, seed=5)
    labels = t.label(left, right)
    for i, x in enumerate(xs):
        p = _sigmoid(beta * x / 2.0)
        sigma = math.sqrt(p * (1 - p) / reps)
        assert abs(labels[i * reps:(i + 1) * reps].mean() - p) < 3.5 * sigma
    np.testing.assert_array_equal(labels, BPrefTeacher(beta=beta, seed=5).label(1000 * left, 1000 * right))
    # beta <= 0 is B-Pref's "rational teacher"
    np.testing.assert_array_equal(BPrefTeacher(beta=-1).label(left, right), oracle_labels(left, right))


# ----------------------------------------------------------------------- preference_accuracy


def test_preference_accuracy_ignores_skips_and_ties():
    labels = np.array([1.0, 0.0, np.nan, 0.5, 1.0, 0.0])
    truth = np.array([1.0, 1.0, 1.0, 0.0, 0.5, 0.0])
    # kept: pairs 0 (right), 1 (wrong), 5 (right)
    assert preference_accuracy(labels, truth) == pytest.approx(2 / 3)
    # probabilities work too
    assert preference_accuracy([0.9, 0.2, 0.6], [1.0, 0.0, 0.0]) == pytest.approx(2 / 3)
    assert math.isnan(preference_accuracy([np.nan, 0.5], [1.0, 1.0]))
    with pytest.raises(ValueError):
        preference_accuracy([1.0], [1.0, 0.0])
