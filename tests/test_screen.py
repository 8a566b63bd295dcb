"""The pre-screen: verdicts on stored episodes, recorded evaluation episodes, and the loop's use of both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rewardsmith import get_task
from rewardsmith.candidate import Candidate
from rewardsmith.coders.base import Completion, Usage
from rewardsmith.program import load_program
from rewardsmith.rundir import RunDir
from rewardsmith.screen import RANDOM_FILE, judge, screen_round
from rewardsmith.trajectories import EpisodeSet, random_rollouts

TASK = get_task("inverted-pendulum")
UPRIGHT = '''def compute_reward(pole_angle, cart_position):
    upright = 1.0 - abs(pole_angle)
    centre = -0.1 * abs(cart_position)
    return upright + centre, {"upright": upright, "centre": centre}
'''
SCALED = UPRIGHT.replace("return upright + centre,", "return 2.0 * (upright + centre),")
SHIFTED = UPRIGHT.replace("return upright + centre,", "return upright + centre + 1.0,")
REACH = '''def compute_reward(fingertip_position, target_position, action):
    distance = -np.sqrt(np.sum((fingertip_position - target_position) ** 2))
    effort = -0.1 * np.sum(action * action)
    return distance + effort, {"distance": distance, "effort": effort}
'''
REACH_RESCALED = REACH.replace("return distance + effort,", "return 2.0 * (distance + effort) + 1.0,")
NEAR = '''def compute_reward(fingertip_position, target_position):
    distance = np.sqrt(np.sum((fingertip_position - target_position) ** 2))
    return -distance, {"distance": -distance}
'''
NEAR_CUBED = NEAR.replace("return -distance,", "return -distance * distance * distance,")
REACH_OTHER = '''def compute_reward(fingertip_position, target_position):
    dx = -abs(fingertip_position[0] - target_position[0])
    return dx, {"dx": dx}
'''
VELOCITY = '''def compute_reward(pole_angular_velocity, cart_velocity):
    calm = -abs(pole_angular_velocity) - 0.5 * cart_velocity * cart_velocity
    return calm, {"calm": calm}
'''
CONSTANT = '''def compute_reward(pole_angle):
    alive = 1.0
    return alive, {"alive": alive}
'''
NONFINITE = '''def compute_reward(pole_angle):
    bad = np.sqrt(-1.0 - abs(pole_angle))
    return bad, {"bad": bad}
'''
# every step costs: the longer the pole stays up (the fitness), the lower the return
AGAINST = '''def compute_reward(pole_angle):
    cost = -1.0 - abs(pole_angle)
    return cost, {"cost": cost}
'''
DOMINATED = '''def compute_reward(pole_angle, cart_position):
    upright = 1000.0 * (1.0 - abs(pole_angle))
    tiny = 0.0001 * (1.0 + abs(cart_position))
    return upright + tiny, {"upright": upright, "tiny": tiny}
'''


@pytest.fixture(scope="module")
def store() -> EpisodeSet:
    return random_rollouts(TASK, episodes=8, max_steps=200, seed=0)


def _prog(source: str):
    return load_program(source, TASK, run_probe=False)


def test_random_rollouts_are_whole_seeded_episodes(store: EpisodeSet, tmp_path: Path) -> None:
    assert store.n_episodes == 8 and store.n_steps == len(store.episode) > 8
    # inverted-pendulum's fitness counts steps: each episode's fitness is its stored length
    np.testing.assert_array_equal(np.bincount(store.episode), store.fitness)
    assert store.transitions.done.sum() == 8 and store.transitions.terminated.sum() == 8
    again = random_rollouts(TASK, episodes=8, max_steps=200, seed=0)
    np.testing.assert_array_equal(again.transitions.state, store.transitions.state)
    store.save(tmp_path / "s.npz")
    loaded = EpisodeSet.load(tmp_path / "s.npz", TASK.state_size)
    assert loaded is not None and list(loaded.origin) == ["random"] * 8
    np.testing.assert_array_equal(loaded.transitions.prev_state, store.transitions.prev_state)
    assert EpisodeSet.load(tmp_path / "s.npz", TASK.state_size + 1) is None  # another layout
    sub = store.take([2, 0])
    np.testing.assert_array_equal(sub.fitness, store.fitness[[2, 0]])
    np.testing.assert_array_equal(np.bincount(sub.episode), store.fitness[[2, 0]])
    np.testing.assert_array_equal(sub.transitions.state[: int(store.fitness[2])],
                                  store.transitions.state[store.episode == 2])
    (tmp_path / "cut.npz").write_bytes((tmp_path / "s.npz").read_bytes()[:100])
    assert EpisodeSet.load(tmp_path / "cut.npz") is None  # a file cut short counts as missing


def test_constant_and_nonfinite_rewards_are_rejected(store: EpisodeSet) -> None:
    const, _ = judge("r00/c00", _prog(CONSTANT), store)
    assert const.decision == "reject" and "constant total" in const.reasons[0]
    bad, _ = judge("r00/c01", _prog(NONFINITE), store)
    assert bad.decision == "reject" and f"non-finite total (NaN/inf or an error) on {store.n_steps}" in bad.reasons[0]
    good, _ = judge("r00/c02", _prog(UPRIGHT), store)
    assert good.decision == "pass" and good.reasons == [] and good.n_steps == store.n_steps


def test_a_rescaled_copy_is_a_duplicate_and_another_program_is_not() -> None:
    task = get_task("reacher")  # fixed-length episodes: an offset changes no policy's ranking
    store = random_rollouts(task, episodes=8, max_steps=200, seed=0)
    assert store.n_steps == 8 * 50 and not store.transitions.terminated.any()
    prog = lambda src: load_program(src, task, run_probe=False)  # noqa: E731
    _, total = judge("r00/c00", prog(REACH), store)
    copy, _ = judge("r01/c02", prog(REACH_RESCALED), store, [("r00/c00", total)])
    assert copy.decision == "reject" and copy.duplicate_of == "r00/c00"
    assert copy.reasons[0] == "near-duplicate of r00/c00 (rho=1.0000, 400 steps): not trained"
    other, _ = judge("r01/c03", prog(REACH_OTHER), store, [("r00/c00", total)])
    assert other.duplicate_of is None and other.decision != "reject"
    # the same ranks but no multiple: -d**3 barely cares about the last centimetres, -d does
    _, near = judge("r00/c01", prog(NEAR), store)
    cubed, _ = judge("r01/c04", prog(NEAR_CUBED), store, [("r00/c01", near)])
    assert cubed.duplicate_of is None


def test_where_episodes_terminate_only_a_positive_multiple_is_a_duplicate(store: EpisodeSet) -> None:
    assert store.transitions.terminated.any()
    _, total = judge("r00/c00", _prog(UPRIGHT), store)
    assert judge("r00/c01", _prog(SCALED), store, [("r00/c00", total)])[0].duplicate_of == "r00/c00"
    # same per-step ranks, but +1 a step pays for staying up longer: not the same reward here
    shifted, _ = judge("r00/c02", _prog(SHIFTED), store, [("r00/c00", total)])
    assert shifted.duplicate_of is None and shifted.decision != "reject"
    other, _ = judge("r00/c03", _prog(VELOCITY), store, [("r00/c00", total)])
    assert other.duplicate_of is None


def test_a_reward_ranking_episodes_against_the_fitness_is_flagged(store: EpisodeSet) -> None:
    assert len(np.unique(store.fitness)) >= 4
    up, up_total = judge("r00/c00", _prog(UPRIGHT), store)
    assert up.score is not None and up.score > 0.5
    against, _ = judge("r00/c01", _prog(AGAINST), store, [("r00/c00", up_total)])
    assert against.decision == "flag" and against.score is not None and against.score < -0.5
    assert "against their true fitness" in against.reasons[0]
    # per step it ranks states like UPRIGHT (both fall with |angle|), but it is no multiple of it
    assert against.duplicate_of is None
    dominated, _ = judge("r00/c02", _prog(DOMINATED), store)
    assert dominated.decision == "flag" and "'upright' is" in dominated.reasons[0]
    few = EpisodeSet(store.transitions, np.zeros(store.n_steps, dtype=np.int64), store.fitness[:1],
                     store.origin[:1])
    assert judge("r00/c03", _prog(AGAINST), few)[0].score is None  # one episode: no preference score


def _accepted(round_idx: int, index: int, source: str) -> Candidate:
    return Candidate(round=round_idx, index=index, source=source, status="accepted", components=["x"])


def test_screen_round_modes(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "off")
    cands = [_accepted(0, 0, CONSTANT)]
    assert screen_round(TASK, run, cands, [], mode="off", log=lambda _: None) == []
    assert cands[0].screen is None and cands[0].status == "accepted" and not (run.path / "screen").exists()
    assert run.events() == []
    for mode in ("flag", "reject"):
        run = RunDir(tmp_path / mode)
        cands = [_accepted(0, 0, UPRIGHT), _accepted(0, 1, SCALED), _accepted(0, 2, CONSTANT)]
        earlier = Candidate(round=0, index=9, source=VELOCITY, status="rejected", stage="validate")
        lines: list[str] = []
        verdicts = screen_round(TASK, run, cands, [earlier], mode=mode, log=lines.append)
        assert [v.decision for v in verdicts] == ["pass", "reject", "reject"]
        assert cands[1].screen["duplicate_of"] == "r00/c00"  # an earlier index of the same round
        assert (run.path / RANDOM_FILE).is_file()
        event = [e for e in run.events() if e["event"] == "screen"]
        assert len(event) == 1 and event[0]["mode"] == mode and len(event[0]["verdicts"]) == 3
        if mode == "reject":
            assert [c.status for c in cands] == ["accepted", "rejected", "rejected"]
            assert cands[1].stage == "screen" and "near-duplicate of r00/c00" in cands[1].error
        else:
            assert all(c.status == "accepted" for c in cands)
            assert any("trained anyway" in line for line in lines)


class _ByRound:
    """Answers round r with ``rounds[r]`` (a real Coder, no LLM)."""

    name = "scripted"

    def __init__(self, rounds: list[list[str]]) -> None:
        self.rounds = rounds
        self.usage = Usage()

    def complete(self, messages, n=1, context=None):
        self.usage.requests += 1
        programs = self.rounds[min(context.round, len(self.rounds) - 1)]
        return [Completion(text=f"```python\n{programs[i % len(programs)]}\n```") for i in range(n)]


TINY = {"task": "inverted-pendulum", "steps": 512, "workers": 1, "n_envs": 2, "eval_episodes": 2,
        "final_seeds": 1, "baselines": False, "stop_when_solved": False}


def test_loop_rejects_a_duplicate_and_tells_the_coder(tmp_path: Path) -> None:
    from rewardsmith.loop import SynthesisConfig, synthesize

    out = tmp_path / "run"
    coder = _ByRound([[UPRIGHT, SCALED], [VELOCITY, UPRIGHT]])
    synthesize(SynthesisConfig(**TINY, iterations=2, samples=2), out=out, coder=coder, log=lambda _: None)
    r0 = json.loads((out / "rounds" / "r00" / "candidates.json").read_text())
    assert r0[0]["screen"]["decision"] in ("pass", "flag") and r0[1]["status"] == "rejected"
    assert r0[1]["stage"] == "screen" and r0[1]["screen"]["duplicate_of"] == "r00/c00"
    assert not (out / "rounds" / "r00" / "c01" / "result.json").exists(), "a screen reject is not trained"
    assert (out / "rounds" / "r00" / "c00" / "episodes.npz").is_file()
    r1 = json.loads((out / "rounds" / "r01" / "results.json").read_text())
    assert r1[1]["screen"]["duplicate_of"] == "r00/c00"  # a later round's copy of a trained program
    screens = [e for e in RunDir(out).events() if e["event"] == "screen"]
    assert [e["round"] for e in screens] == [0, 1]
    assert screens[1]["n_episodes"] == screens[0]["n_episodes"] + 2, "round 2 also screens on r00/c00's eval episodes"
    prompt = json.loads((out / "rounds" / "r01" / "prompt.json").read_text())[1]["content"]
    assert "r00/c01: was not trained: near-duplicate of r00/c00" in prompt
    assert "Before training, the pre-screen on 8 stored episodes" in prompt  # the best's verdict


def test_offline_loop_records_verdicts(tmp_path: Path) -> None:
    from rewardsmith.loop import SynthesisConfig, synthesize

    out = tmp_path / "run"
    synthesize(SynthesisConfig(**TINY, iterations=2, samples=2, screen="flag"), out=out, log=lambda _: None)
    for r in ("r00", "r01"):
        cands = json.loads((out / "rounds" / r / "candidates.json").read_text())
        assert all(c["screen"]["decision"] in ("pass", "flag", "reject") for c in cands if c["source"])
        assert all(c["status"] != "rejected" or c["stage"] != "screen" for c in cands), "flag mode rejects nothing"
    assert sum(e["event"] == "screen" for e in RunDir(out).events()) == 2
    assert "(pre-screen: " in json.loads((out / "rounds" / "r01" / "prompt.json").read_text())[1]["content"]


def test_train_saves_the_evaluation_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardsmith.train import EPISODES_FILE, train
    from rewardsmith.trajectories import EpisodeRecorder

    result = train(TASK, _prog(UPRIGHT), steps=256, n_envs=2, eval_episodes=3, out=tmp_path / "a", tensorboard=False)
    found = EpisodeSet.load(tmp_path / "a" / EPISODES_FILE, TASK.state_size)
    assert found is not None and found.n_episodes == 3
    np.testing.assert_allclose(found.fitness, result.episodes)
    np.testing.assert_array_equal(np.bincount(found.episode), found.fitness)  # fitness = steps balanced
    assert found.transitions.done.sum() == 3 and found.transitions.done[-1]
    # within an episode each step starts where the last one ended
    same = found.episode[1:] == found.episode[:-1]
    np.testing.assert_array_equal(found.transitions.prev_state[1:][same], found.transitions.state[:-1][same])

    def broken(self):
        raise OSError("disk full")

    monkeypatch.setattr(EpisodeRecorder, "episodes", broken)
    with pytest.warns(UserWarning, match="evaluation episodes not saved"):
        again = train(TASK, _prog(UPRIGHT), steps=256, n_envs=2, eval_episodes=3, out=tmp_path / "b",
                      tensorboard=False)
    assert again.fitness_mean == result.fitness_mean and not (tmp_path / "b" / EPISODES_FILE).exists()


def test_round_table_shows_the_verdict() -> None:
    from rich.console import Console

    from rewardsmith.ui import round_table, screen_cell

    dup = Candidate(round=1, index=2, status="rejected", stage="screen", error="pre-screen: near-duplicate",
                    screen={"decision": "reject", "score": 0.5, "duplicate_of": "r00/c01"})
    plain = Candidate(round=1, index=3, status="accepted")
    assert screen_cell(dup) == "reject +0.50 (dup of r00/c01)" and screen_cell(plain) == "-"
    console = Console(width=200, record=True)
    console.print(round_table(1, [dup, plain], None))
    text = console.export_text()
    assert "screen" in text and "reject +0.50 (dup of r00/c01)" in text


ENDLESS_WHEN_TILTED = '''def compute_reward(pole_angle):
    acc = 0.0
    if abs(pole_angle) > 0.05:
        for i in range(10 ** 15):
            acc = math.sin(acc + i)
    return 1.0 + 0.0 * acc, {"alive": 1.0}
'''


def test_relabelling_runs_in_a_child_that_is_killed_past_its_limit(store: EpisodeSet,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from rewardsmith import screen
    from rewardsmith.screen import ScreenTimeout, relabel_guarded, relabel_program

    total, comps, nonfinite = relabel_guarded(_prog(UPRIGHT), store, timeout_s=30)
    ref = relabel_program(_prog(UPRIGHT), store)
    assert np.array_equal(total, ref[0]) and np.array_equal(comps, ref[1]) and nonfinite == ref[2] == 0
    t0 = time.perf_counter()
    with pytest.raises(ScreenTimeout, match="did not return within 2 s"):
        relabel_guarded(_prog(ENDLESS_WHEN_TILTED), store, timeout_s=2)
    assert time.perf_counter() - t0 < 10
    monkeypatch.setattr(screen, "TIMEOUT_S", 2.0)
    verdict, per_step = judge("r00/c00", _prog(ENDLESS_WHEN_TILTED), store)
    assert verdict.decision == "reject" and per_step is None and "not trained" in verdict.reasons[0]
