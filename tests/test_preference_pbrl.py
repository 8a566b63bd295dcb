"""The PbRL loop: query selection, rollouts into segments, PPO live and SAC relabelled, resume, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rewardsmith.errors import RewardsmithError
from rewardsmith.preference import Segment
from rewardsmith.preference.collect import collect, cut_segments
from rewardsmith.preference.model import RewardModel
from rewardsmith.preference.pbrl import PrefsConfig, PrefsRun, prefs
from rewardsmith.preference.queries import pair_scores, query_schedule, select_queries
from rewardsmith.preference.segments import PreferenceBatch
from rewardsmith.preference.teachers import oracle_labels
from rewardsmith.preference.teaching import RewardTeacher, make_teacher
from rewardsmith.tasks import get_task

os.environ.setdefault("MUJOCO_GL", "egl")


class _Members:
    """A stand-in ensemble over 1-D states: member j's reward is weights[j] * state."""

    def __init__(self, weights):
        self.w = np.asarray(weights, dtype=float)

    def predict_members(self, x):
        return self.w[:, None, None] * x[None, ..., 0]


def _seg(v, n=3):
    return Segment(np.full((n, 1), float(v)), rewards=np.full(n, float(v)))


def test_disagreement_and_entropy_pick_the_informative_pairs():
    pool = [_seg(v) for v in (0.0, 0.01, 1.0, 5.0)]
    left, right = [pool[0], pool[0], pool[2]], [pool[1], pool[3], pool[3]]
    agree = _Members([1.0, 1.0, 1.0])
    split = _Members([1.0, -1.0, 0.5])
    # members that agree: no disagreement anywhere; members with opposite signs disagree most on far pairs
    assert np.allclose(pair_scores(agree, left, right, "disagreement"), 0)
    d = pair_scores(split, left, right, "disagreement")
    assert d[1] > d[0] and d[1] > d[2] * 0.99
    # entropy is highest where the mean prediction is closest to 0.5 (the near-identical pair)
    e = pair_scores(agree, left, right, "entropy")
    assert np.argmax(e) == 0
    with pytest.raises(ValueError, match="unknown query selection"):
        pair_scores(agree, left, right, "kcenter")


def test_select_queries_oversamples_and_keeps_the_best_scored():
    pool = [_seg(v) for v in np.linspace(0, 1, 20)]
    lft, rgt, scores = select_queries(pool, 5, model=_Members([1.0, 1.0]), method="entropy", oversample=10, rng=0)
    assert len(lft) == len(rgt) == 5 and np.all(np.diff(scores) <= 0)
    # the kept pairs are the closest ones of the 50 candidates: near-ties, far from the uniform mean gap
    gaps = [abs(a.states[0, 0] - b.states[0, 0]) for a, b in zip(lft, rgt)]
    assert max(gaps) < 0.15  # at most two grid steps apart (random pairs are ~0.35 apart on average)
    assert all(a is not b for a, b in zip(lft, rgt))
    lft_u, _, s_u = select_queries(pool, 5, model=None, method="disagreement", rng=0)
    assert len(lft_u) == 5 and np.all(s_u == 0)  # no model yet: uniform


def test_query_schedule_spends_exactly_the_budget():
    assert query_schedule(100, 4, 0.1, "constant") == [10, 23, 23, 22, 22]
    h = query_schedule(100, 4, 0.1, "hyperbolic")
    assert sum(h) == 100 and h[0] == 10 and h[1] > h[2] > h[3] > h[4]
    assert query_schedule(7, 0) == [7]
    with pytest.raises(ValueError, match="unknown query schedule"):
        query_schedule(10, 2, kind="linear")


def test_rollouts_carry_true_rewards_and_segments_learn_the_pendulum_reward():
    task = get_task("pendulum")
    rollouts = collect(task, None, 6, seed=0)
    assert all(len(r) == 200 for r in rollouts)
    for r in rollouts:  # the fitness is the episode's true return
        assert r.fitness == pytest.approx(r.rewards.sum(), rel=1e-6)
    rng = np.random.default_rng(0)
    segs = cut_segments(rollouts, 50, 40, rng)
    assert all(s.states.base is None and s.rewards is not None for s in segs)
    left, right, _ = select_queries(segs, 400, method="uniform", rng=1)
    labels = make_teacher("scripted").compare(left, right)
    batch = PreferenceBatch.from_segments(left[:300], right[:300], labels[:300])
    test = PreferenceBatch.from_segments(left[300:], right[300:], labels[300:])
    model = RewardModel(task.state_size, seed=0)
    model.fit(batch)
    assert model.accuracy(test) > 0.85


def test_pbrl_ppo_end_to_end_writes_a_run_directory(tmp_path):
    out = tmp_path / "run"
    cfg = PrefsConfig(task="pendulum", queries=30, steps=2048, updates=2, episodes=3, n_envs=2, eval_episodes=2)
    summary = prefs(cfg, out=out)
    for name in ("manifest.json", "events.jsonl", "reward_model.pt", "agent/model.zip", "progress.jsonl",
                 "state.json", "summary.json", "queries/i00.npz", "queries/i02.npz"):
        assert (out / name).exists(), name
    assert not list((out / "queries").glob("*.pending.npz"))
    rows = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert rows[-1]["queries_total"] == 30 == summary["queries"]
    assert summary["steps"] >= 2048 and np.isfinite(summary["final_fitness_mean"])
    # the labels are the oracle's on the stored segments' true rewards
    with np.load(out / "queries" / "i01.npz") as d:
        assert np.array_equal(d["label"], oracle_labels(d["left_rewards"], d["right_rewards"]))
    assert list((out / "tb").rglob("events.out.tfevents.*"))


def test_pbrl_sac_relabels_the_replay_buffer_with_the_refitted_reward(tmp_path):
    cfg = PrefsConfig(task="pendulum", algo="sac", queries=20, steps=600, updates=2, episodes=2, eval_episodes=1)
    run = PrefsRun(cfg, tmp_path / "sac")
    run.config.steps = 600
    summary = run.run()
    assert summary["algo"] == "sac"
    rows = summary["progress"]
    assert rows[1]["relabelled"] > 0 and rows[2]["relabelled"] > rows[1]["relabelled"]
    # after the last fit the buffer holds exactly the learned reward of each stored transition
    # (up to the steps trained after the last relabel, which the wrapper labelled with the same reward)
    buffer = run.trainer.model.replay_buffer
    arrays = run.trainer.replay_states.arrays
    n = buffer.pos
    assert run.trainer.source is run.source and run.source.scale != 1.0  # standardised after each fit
    want = run.source.compute(
        type("T", (), {"state": arrays["state"][:n, 0], "action": None})())[0]
    assert np.allclose(buffer.rewards[:n, 0], want, atol=1e-5)
    assert (tmp_path / "sac" / "agent" / "replay_buffer.pkl").is_file()


class _Counting:
    def __init__(self, fail_on: int | None = None):
        self.calls, self.fail_on, self.inner = 0, fail_on, RewardTeacher()

    def compare(self, left, right):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise RewardsmithError("teacher went away")
        return self.inner.compare(left, right)


def test_an_interrupted_run_resumes_without_asking_again(tmp_path):
    out = tmp_path / "run"
    cfg = PrefsConfig(task="pendulum", queries=30, steps=2048, updates=2, episodes=3, n_envs=2, eval_episodes=1)
    with pytest.raises(RewardsmithError, match="teacher went away"):
        PrefsRun(cfg, out, teacher=_Counting(fail_on=2)).run()
    assert (out / "queries" / "i01.pending.npz").is_file()  # the pairs about to be asked are kept
    with np.load(out / "queries" / "i01.pending.npz") as d:
        pending = np.array(d["left"])
    again = _Counting()
    summary = prefs(resume=out, teacher=again)
    assert again.calls == 2  # iterations 1 and 2; iteration 0's answers were reused
    with np.load(out / "queries" / "i01.npz") as d:
        assert np.array_equal(d["left"], pending)  # the same pairs were asked after the resume
    assert summary["queries"] == 30
    kinds = [json.loads(line)["event"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert kinds[0] == "start" and "resume" in kinds and kinds[-1] == "done"


def test_prefs_config_errors_are_precise():
    with pytest.raises(RewardsmithError, match="needs a task"):
        PrefsConfig().validate()
    with pytest.raises(RewardsmithError, match="unknown teacher"):
        PrefsConfig(task="pendulum", teacher="crowd").validate()
    with pytest.raises(RewardsmithError, match="cannot be spread"):
        PrefsConfig(task="pendulum", queries=3, updates=5).validate()
    with pytest.raises(RewardsmithError, match="not a prefs run"):
        prefs(resume="/nonexistent/dir")


def test_cli_prefs_runs_and_reports(tmp_path):
    from typer.testing import CliRunner

    from rewardsmith.cli import app

    res = CliRunner().invoke(app, ["prefs", "--task", "pendulum", "--queries", "12", "--steps", "1024",
                                   "--updates", "1", "--episodes", "2", "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["queries"] == 12
    bad = CliRunner().invoke(app, ["prefs", "--task", "pendulum", "--selection", "kcenter"])
    assert bad.exit_code == 1 and "unknown selection" in bad.output


def test_pbrl_with_the_llm_teacher_through_a_loopback_server(tmp_path, monkeypatch):
    from openai_stub import ok, serve

    monkeypatch.setenv("REWARDSMITH_CACHE", str(tmp_path / "cache"))
    with serve() as stub:
        stub.responder = lambda body: ok("The right one stays closer to upright.\nAnswer: 2")
        monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        cfg = PrefsConfig(task="pendulum", teacher="llm", queries=6, steps=1024, updates=1, episodes=2, n_envs=2,
                          eval_episodes=1)
        summary = prefs(cfg, out=tmp_path / "llm")
        asked = stub.chat_requests
    assert summary["queries"] == 6 and summary["teacher"] == "llm"
    assert len(asked) == 6  # one request per pair
    text = " ".join(m["content"] for m in asked[0]["body"]["messages"])
    assert "angle" in text and "angular_velocity" in text  # the segments are described by the task's variables
    for i in (0, 1):
        with np.load(tmp_path / "llm" / "queries" / f"i{i:02d}.npz") as d:
            assert d["label"].tolist() == [0.0] * len(d["label"])  # "Answer: 2" = the right segment
