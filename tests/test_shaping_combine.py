"""Reward transforms, combinations and the potential-shaping gym wrapper: formulas by hand,
task checks, gamma propagation, live rewards == relabelled ones, and telescoping shaping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from rewardsmith.errors import RewardsmithError
from rewardsmith.program import load_program
from rewardsmith.shaping import (
    Centered,
    Conjunction,
    FunctionSource,
    Gated,
    Log,
    Normalize,
    PotentialShaping,
    PotentialShapingWrapper,
    Sigmoid,
    Symlog,
    WeightedSum,
)
from rewardsmith.sources import Transitions
from rewardsmith.tasks import get_task
from rewardsmith.wrappers import RewardVecEnv, TaskWrapper, relabel

TASK = get_task("point-goal")  # state: position (0:2), velocity (2:4), goal (4:6), action (6:8)
DIST = '''
def compute_reward(position, goal, action):
    d = np.sqrt(np.sum((position - goal) ** 2))
    ctrl = 0.01 * np.sum(action * action)
    return -d - ctrl, {"dist": -d, "ctrl": -ctrl}
'''


@pytest.fixture(scope="module")
def program():
    return load_program(DIST, TASK, run_probe=False)


def _dist(s: np.ndarray) -> np.ndarray:
    return np.sqrt(((s[:, 0:2] - s[:, 4:6]) ** 2).sum(1))


def _phi(s: np.ndarray) -> np.ndarray:
    return -_dist(s)


def _x(s: np.ndarray) -> np.ndarray:
    return s[:, 0].copy()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed as exp(-log(1 + exp(-x)))."""
    return np.exp(-np.logaddexp(0.0, -x))


def _batch(r: np.ndarray, seed: int = 0) -> Transitions:
    """States whose x position (column 0) is ``r``; the rest random."""
    s = np.random.default_rng(seed).uniform(-1, 1, size=(len(r), TASK.state_size))
    s[:, 0] = r
    return Transitions.from_states(s)


def test_normalize_matches_numpy_stream_and_clips() -> None:
    rng = np.random.default_rng(0)
    norm = Normalize(_x, clip=3.0, task=TASK)
    assert norm.components == ["value", "normalized"]
    seen = []
    for i in range(6):
        r = rng.normal(5.0, 2.0, size=7)
        if i == 4:
            r[0] = 1e3  # an outlier: clipped at +3
        seen.append(r)
        total, comps = norm.compute(_batch(r, i))
        allr = np.concatenate(seen)
        expected = np.clip((r - allr.mean()) / np.sqrt(allr.var() + 1e-8), -3.0, 3.0)
        np.testing.assert_allclose(total, expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(comps[:, 0], r)
        np.testing.assert_allclose(comps[:, 1], total)
    assert total.max() <= 3.0 and np.isclose(norm.compute(_batch(np.array([1e6])))[0][0], 3.0)
    fixed = Normalize(_x, task=TASK, update=False)
    fixed.load_state_dict(norm.state_dict())
    norm.update = False
    r = rng.normal(size=5)
    np.testing.assert_allclose(fixed.compute(_batch(r))[0], norm.compute(_batch(r))[0])
    np.testing.assert_allclose(fixed.compute(_batch(r))[0], norm.compute(_batch(r))[0])  # no drift


def test_sigmoid_centered_log_symlog_formulas() -> None:
    r = np.array([-1e4, -3.0, -0.5, 0.0, 0.2, 2.0, 1e4])
    t = _batch(r)
    with np.errstate(over="raise"):
        sig = Sigmoid(_x, reference=0.5, scale=2.0, task=TASK).compute(t)[0]
    np.testing.assert_allclose(sig, _sigmoid((r - 0.5) / 2.0), rtol=1e-12)
    assert sig[0] == 0.0 and sig[-1] == 1.0
    np.testing.assert_allclose(Centered(_x, reference=2.5, task=TASK).compute(t)[0], r - 2.5)
    np.testing.assert_allclose(Symlog(_x, task=TASK).compute(t)[0], np.sign(r) * np.log(1 + np.abs(r)))
    # a reference source: the sigmoid of r minus a per-transition reference reward (PAR)
    ref = FunctionSource(lambda s: s[:, 1], TASK)
    par = Sigmoid(_x, reference=ref, task=TASK).compute(t)[0]
    np.testing.assert_allclose(par, _sigmoid(r - t.state[:, 1]), rtol=1e-12)
    log = Log(_x, offset=1.0, epsilon=1e-6, task=TASK)
    total, _ = log.compute(t)
    ok = r + 1.0 > 1e-6
    np.testing.assert_allclose(total[ok], np.log(r[ok] + 1.0))
    np.testing.assert_allclose(total[~ok], np.log(1e-6))
    assert log.clipped == (~ok).sum() == 2 and log.components == ["value", "log"]
    with pytest.raises(RewardsmithError, match="offset"):
        Log(_x, on_nonpositive="raise", task=TASK).compute(t)


def test_transform_keeps_base_components(program) -> None:
    s = Sigmoid(program)
    assert s.components == ["dist", "ctrl", "sigmoid"] and s.task is TASK
    t = _batch(np.linspace(-1, 1, 5))
    base_total, base_comps = relabel(program, t)
    total, comps = s.compute(t)
    np.testing.assert_allclose(comps[:, :2], base_comps)
    np.testing.assert_allclose(total, 1 / (1 + np.exp(-base_total)))
    assert Symlog(FunctionSource(_x, TASK, name="symlog")).components == ["base/symlog", "symlog"]


def test_weighted_sum_by_hand(program) -> None:
    t = _batch(np.array([0.3, -0.2, 0.9]))
    ws = WeightedSum({"task": (program, 2.0), "x": (_x, -0.5)})
    assert ws.components == ["task", "task/dist", "task/ctrl", "x", "x/value"]
    total, comps = ws.compute(t)
    ctrl = 0.01 * (t.state[:, 6:8] ** 2).sum(1)
    expected = 2.0 * (-_dist(t.state) - ctrl) - 0.5 * t.state[:, 0]
    np.testing.assert_allclose(total, expected)
    np.testing.assert_allclose(comps[:, 0], 2.0 * (-_dist(t.state) - ctrl))
    np.testing.assert_allclose(comps[:, 1], -_dist(t.state))  # the term's own, unweighted component
    np.testing.assert_allclose(comps[:, 3], -0.5 * t.state[:, 0])
    as_list = WeightedSum([("task", program, 2.0), ("x", _x, -0.5)])
    np.testing.assert_allclose(as_list.compute(t)[0], total)
    with pytest.raises(RewardsmithError, match="unique"):
        WeightedSum([("a", program, 1.0), ("a", program, 1.0)])


def test_gated_by_hand(program) -> None:
    gate = FunctionSource(_x, TASK)
    t = _batch(np.array([-0.5, 0.05, 0.1, 0.8]))
    g = Gated(gate, program, threshold=0.1)
    assert g.components == ["gate", "dense", "dense/dist", "dense/ctrl"]
    total, comps = g.compute(t)
    dense, dense_comps = relabel(program, t)
    open_ = np.array([0.0, 0.0, 0.0, 1.0])  # strictly above the threshold
    np.testing.assert_allclose(total, t.state[:, 0] + open_ * dense)
    np.testing.assert_allclose(comps[:, 1], open_ * dense)
    np.testing.assert_allclose(comps[:, 2:], open_[:, None] * dense_comps)
    np.testing.assert_allclose(Gated(gate, program, 0.1, include_gate=False).compute(t)[0], open_ * dense)


def test_conjunction_product_and_min(program) -> None:
    t = _batch(np.array([-2.0, 0.0, 1.5]))
    a, b = Sigmoid(_x, task=TASK), Sigmoid(program, reference=-1.0)
    sa, sb = a.compute(t)[0], b.compute(t)[0]
    prod = Conjunction([a, b])
    assert prod.components == ["term0", "term0/value", "term0/sigmoid", "term1", "term1/dist", "term1/ctrl",
                               "term1/sigmoid"]
    np.testing.assert_allclose(prod.compute(t)[0], sa * sb)
    mn = Conjunction({"x": a, "reach": b}, mode="min")
    assert mn.components[0] == "x" and mn.components[3] == "reach"
    np.testing.assert_allclose(mn.compute(t)[0], np.minimum(sa, sb))
    with pytest.raises(RewardsmithError, match="mode"):
        Conjunction([a, b], mode="max")


def test_mismatched_tasks_raise(program) -> None:
    maze = get_task("point-maze")
    other = FunctionSource(lambda s: s[:, 0], maze)
    for make in (lambda: WeightedSum({"a": (program, 1.0), "b": (other, 1.0)}),
                 lambda: Gated(program, other), lambda: Conjunction([program, other]),
                 lambda: Sigmoid(program, reference=other)):
        with pytest.raises(RewardsmithError, match="point-maze@1") as err:
            make()
        assert "point-goal@1" in str(err.value)
    with pytest.raises(RewardsmithError, match="task="):
        WeightedSum({"a": (_x, 1.0)})  # only callables: no task known


def test_set_gamma_reaches_nested_potential_shaping(program) -> None:
    p1, p2 = PotentialShaping(_phi, task=TASK), PotentialShaping(_phi, base=program)
    src = WeightedSum({"s": (Sigmoid(p1), 1.0), "g": (Gated(program, p2), 0.5)})
    t = _batch(np.zeros(2))
    with pytest.raises(RewardsmithError, match="gamma"):
        src.compute(t)
    assert callable(getattr(src, "set_gamma", None))  # what the Trainer looks for
    src.set_gamma(0.97)
    assert p1.gamma == p2.gamma == 0.97
    src.compute(t)


def test_live_vec_env_equals_relabel(program) -> None:
    shaping = PotentialShaping(_phi, task=TASK)
    source = WeightedSum({
        "task": (program, 1.0),
        "shaping": (shaping, 0.5),
        "gated": (Gated(lambda s: -_dist(s), program, threshold=-0.6), 1.0),
        "both": (Conjunction([Sigmoid(program, reference=-0.5, scale=0.2), Sigmoid(_phi, task=TASK)]), 2.0),
        "sym": (Symlog(_x, task=TASK), 0.1),
    })
    source.set_gamma(0.95)
    venv = RewardVecEnv(DummyVecEnv([lambda: TaskWrapper(TASK.make_env(), TASK) for _ in range(2)]), source)
    venv.seed(3)
    venv.reset()
    rng = np.random.default_rng(3)
    kept, given, comps = [], [], []
    for _ in range(130):  # past the 100-step time limit: auto-resets in between
        _, rewards, _, _ = venv.step(rng.uniform(-1, 1, size=(2, 2)).astype(np.float32))
        t = venv.last_transitions
        kept.append(Transitions(t.prev_state.copy(), t.action.copy(), t.state.copy(), t.terminated.copy(),
                                t.truncated.copy()))
        given.append(rewards)
        comps.append(venv.last_components.copy())
    venv.close()
    stored = Transitions(*(np.concatenate([getattr(k, f) for k in kept]) for f in
                           ("prev_state", "action", "state", "terminated", "truncated")))
    assert stored.truncated.any()
    total, components = relabel(source, stored)
    np.testing.assert_allclose(total, np.concatenate(given), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(components, np.concatenate(comps))
    assert len(source.components) == components.shape[1]
    gate = components[:, source.components.index("gated/gate")]
    assert (gate > -0.6).any() and (gate <= -0.6).any()  # the gate both opened and closed


def _episode(env: gym.Env, seed: int, gamma: float, max_steps: int = 1000) -> tuple:
    env.reset(seed=seed)
    env.action_space.seed(seed)
    phi0 = env._last_phi
    fs, rewards, infos = [], [], []
    for _ in range(max_steps):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        fs.append(info["shaping"])
        rewards.append(r)
        infos.append(info)
        if term or trunc:
            return phi0, np.array(fs), np.array(rewards), infos, term, trunc
    raise AssertionError("episode did not end")


def test_wrapper_telescopes_on_terminating_env() -> None:
    gamma = 0.9
    phi = lambda o: 1.0 + float(o[0]) ** 2 + float(o[2])  # noqa: E731  nonzero at the terminal state
    env = PotentialShapingWrapper(gym.make("CartPole-v1"), gamma=gamma, potential_fn=phi)
    phi0, fs, rewards, infos, term, _ = _episode(env, seed=0, gamma=gamma)
    assert term
    steps = len(fs)
    disc = float(np.sum(gamma ** np.arange(steps) * fs))
    assert disc == pytest.approx(-phi0, rel=1e-9)  # gamma^T Phi(s_T) (1 - terminated) = 0
    phis = [phi0] + [i["potential"] for i in infos]
    assert phis[-1] != 0.0 and fs[-1] == pytest.approx(-phis[-2])  # Phi(s') = 0 at termination
    np.testing.assert_allclose(rewards, 1.0 + fs)  # CartPole's own reward is 1 per step


def test_wrapper_on_task_env_truncation_keeps_potential() -> None:
    gamma = 0.95
    env = PotentialShapingWrapper(TaskWrapper(TASK.make_env(), TASK, state_in_info=False), gamma=gamma,
                                  potential=PotentialShaping(_phi, task=TASK))
    phi0, fs, rewards, infos, term, trunc = _episode(env, seed=1, gamma=gamma)
    assert trunc and not term and len(fs) == 100
    phi_T = float(_phi(env.env.step_state[None])[0])
    disc = float(np.sum(gamma ** np.arange(100) * fs))
    assert disc == pytest.approx(gamma ** 100 * phi_T - phi0, rel=1e-9, abs=1e-12)
    assert fs[-1] == pytest.approx(gamma * phi_T - infos[-2]["potential"])  # Phi(s') kept at truncation
    np.testing.assert_allclose(rewards, [i["env_reward"] + i["shaping"] for i in infos])


def test_wrapper_argument_errors() -> None:
    with pytest.raises(RewardsmithError, match="gamma"):
        PotentialShapingWrapper(gym.make("CartPole-v1"), gamma=None, potential_fn=lambda o: 0.0)
    with pytest.raises(RewardsmithError, match="exactly one"):
        PotentialShapingWrapper(gym.make("CartPole-v1"), gamma=0.9)
    env = PotentialShapingWrapper(gym.make("CartPole-v1"), gamma=0.9, potential=_phi)
    with pytest.raises(RewardsmithError, match="reward_state"):
        env.reset(seed=0)
