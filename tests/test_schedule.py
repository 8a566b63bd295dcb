"""Successive halving, honest final selection, continuation, warm starts and the device rule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rewardsmith.candidate import Candidate
from rewardsmith.errors import RewardsmithError, TrainingError
from rewardsmith.loop import SynthesisConfig, synthesize
from rewardsmith.schedule import HALVING_FILE, planned_jobs, rung_budgets, survivors
from rewardsmith.stages import select_by_fitness, top_candidates
from rewardsmith.train import resolve_device, train

TINY = {"task": "inverted-pendulum", "workers": 2, "n_envs": 2, "eval_episodes": 2, "baselines": False,
        "stop_when_solved": False, "screen": "off"}
PROGRAM = '''
def compute_reward(pole_angle, action):
    upright = 1.0 - abs(pole_angle)
    return upright, {"upright": upright}
'''


def test_rung_budgets_and_survivors() -> None:
    assert rung_budgets(100_000, 2, 0.25) == [25_000, 50_000, 100_000]
    assert rung_budgets(90_000, 3, 1 / 9) == [10_000, 30_000, 90_000]
    assert rung_budgets(1000, 2, 1.0) == [1000]
    assert rung_budgets(1000, 2, 0.3)[-1] == 1000 and rung_budgets(1000, 2, 0.3)[0] == 250
    assert [survivors(n, 2) for n in (1, 2, 3, 4, 5)] == [1, 1, 2, 2, 3]
    assert planned_jobs(4, 100_000, 2, 0.25) == 4 + 2 + 1
    assert planned_jobs(0, 100_000) == 0
    with pytest.raises(ValueError):
        rung_budgets(1000, 1, 0.5)


def test_selection_compares_only_full_budget_candidates() -> None:
    short = Candidate(0, 0, status="trained", fitness_mean=900.0, budget=500)
    full_lo = Candidate(0, 1, status="trained", fitness_mean=100.0, budget=2000)
    full_hi = Candidate(0, 2, status="trained", fitness_mean=300.0, budget=2048)
    nan = Candidate(0, 3, status="trained", fitness_mean=float("nan"), budget=2048)
    assert select_by_fitness([short, full_lo, full_hi, nan], budget=2000) is full_hi
    assert select_by_fitness([short, full_lo, full_hi]) is short
    assert top_candidates([short, full_lo, full_hi], 2, budget=2000) == [full_hi, full_lo]
    assert select_by_fitness([short], budget=2000) is short  # nothing reached the budget: fall back


def test_continue_from_trains_no_step_twice(tmp_path: Path) -> None:
    out = tmp_path / "t"
    first = train("inverted-pendulum", PROGRAM, steps=512, seed=3, n_envs=2, eval_episodes=2, out=out)
    more = train("inverted-pendulum", PROGRAM, steps=1024, seed=3, n_envs=2, eval_episodes=2, out=out,
                 continue_from=out)
    assert first.continued_from == 0 and more.continued_from == first.steps and more.steps >= 1024
    assert len(more.curve) >= len(first.curve)
    other_seed = train("inverted-pendulum", PROGRAM, steps=1024, seed=4, n_envs=2, eval_episodes=2,
                       out=tmp_path / "u", continue_from=out)
    assert other_seed.continued_from == 0  # not this training's checkpoint: from scratch
    other_reward = train("inverted-pendulum", "sparse", steps=1024, seed=3, n_envs=2, eval_episodes=2,
                         out=tmp_path / "v", continue_from=out)
    assert other_reward.continued_from == 0


def test_warm_start_starts_from_the_saved_policy(tmp_path: Path) -> None:
    import torch

    from rewardsmith.tasks import get_task
    from rewardsmith.trainer import Trainer

    src = tmp_path / "src"
    train("inverted-pendulum", PROGRAM, steps=512, seed=1, n_envs=2, eval_episodes=2, out=src)
    task = get_task("inverted-pendulum")
    warm = Trainer.warm_start(src, task, "sparse", seed=9, n_envs=2)
    cold = Trainer(task, "sparse", seed=9, n_envs=2)
    saved = Trainer.load(src)
    try:
        w, s, c = (dict(t.model.policy.state_dict()) for t in (warm, saved, cold))
        assert all(torch.equal(w[k], s[k]) for k in w)
        assert not all(torch.equal(c[k], s[k]) for k in c)
        assert warm.num_timesteps == 0 and warm.warm_from == str(src)
        from rewardsmith.trainer import _find_normalize

        assert np.array_equal(_find_normalize(warm.venv).obs_rms.mean, _find_normalize(saved.venv).obs_rms.mean)
    finally:
        for t in (warm, cold, saved):
            t.close()
    with pytest.raises(TrainingError, match="warm-start"):
        Trainer.warm_start(src, task, "sparse", algo="sac", n_envs=1)


def test_halving_loop_continues_survivors_and_chooses_on_several_seeds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = synthesize(SynthesisConfig(**TINY, steps=2048, iterations=1, samples=3, final_seeds=2,
                                         schedule="halving"), out=out, log=lambda _line: None)
    record = json.loads((out / "rounds/r00" / HALVING_FILE).read_text())
    assert record["budgets"] == [512, 1024, 2048]
    rungs = record["rungs"]
    assert [len(r["kept"]) for r in rungs] == [2, 1, 1]
    first = {name: snap["fitness_mean"] for name, snap in rungs[0]["fitness"].items()}
    stopped = set(first) - set(rungs[0]["kept"])
    assert min(first[k] for k in rungs[0]["kept"]) >= max(first[k] for k in stopped)
    survivor = rungs[-1]["kept"][0]
    res = json.loads((out / "rounds" / survivor / "result.json").read_text())
    assert res["steps"] >= 2048 and res["continued_from"] >= 1024  # continued, never restarted
    for name in stopped:
        assert json.loads((out / "rounds" / name / "result.json").read_text())["steps"] < 1024
    results = json.loads((out / "rounds/r00/results.json").read_text())
    budgets = sorted(c["budget"] for c in results)
    assert budgets[-1] >= 2048 and budgets[0] < 1024
    assert summary["compute"]["search_steps"] == sum(budgets) < 3 * 2048
    finalists = summary["finalists"]
    assert len(finalists) == 1  # one round: only one candidate reached the full budget
    assert finalists[0]["chosen"] and finalists[0]["name"] == survivor
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["steps"] for e in events if e["event"] == "rung"] == [512, 1024, 2048]

    # resumed after the final stage was lost: the rungs are read back, nothing is retrained
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "rounds").rglob("result.json")}
    (out / "summary.json").unlink()
    again = synthesize(resume=out, log=lambda _line: None)
    assert {p: p.stat().st_mtime_ns for p in (out / "rounds").rglob("result.json")} == mtimes
    assert again["best"]["round"] == summary["best"]["round"] and again["best"]["index"] == summary["best"]["index"]


def test_two_finalists_the_better_one_by_iqm_wins(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = synthesize(SynthesisConfig(**TINY, steps=512, iterations=2, samples=2, final_seeds=2,
                                         final_candidates=2, warm_start=True), out=out, log=lambda _line: None)
    rows = summary["finalists"]
    assert len(rows) == 2 and sum(r["chosen"] for r in rows) == 1
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["retrained"]["iqm"] == max(r["retrained"]["iqm"] for r in rows)
    assert summary["best"]["fitness_iqm"] == chosen["retrained"]["iqm"]
    assert (summary["best"]["round"], summary["best"]["index"]) == (chosen["round"], chosen["index"])
    for r in rows:
        assert len(list((out / "final" / r["name"].replace("/", "")).glob("seed*/result.json"))) == 2
    winner_src = json.loads((out / "rounds" / f"r{chosen['round']:02d}" / "results.json").read_text())
    src = next(c["source"] for c in winner_src if c["index"] == chosen["index"])
    assert src.strip().splitlines()[-1].strip() in (out / "best_reward.py").read_text()
    # warm start: round 2 began from round 1's best policy
    r0 = json.loads((out / "rounds/r00/results.json").read_text())
    best0 = max((c for c in r0 if c["fitness_mean"] is not None), key=lambda c: c["fitness_mean"])
    for c in json.loads((out / "rounds/r01/results.json").read_text()):
        if c["fitness_mean"] is not None:
            res = json.loads((out / "rounds/r01" / f"c{c['index']:02d}" / "result.json").read_text())
            assert res["warm_from"] == str(out / "rounds" / f"r00/c{best0['index']:02d}")
    assert summary["compute"]["final_steps"] >= 2 * 2 * 512


def test_bad_schedule_settings_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RewardsmithError, match="unknown schedule 'fast'"):
        SynthesisConfig(task="inverted-pendulum", schedule="fast").validated()
    with pytest.raises(RewardsmithError, match="halving_eta"):
        SynthesisConfig(task="inverted-pendulum", halving_eta=1).validated()
    assert SynthesisConfig(task="x", schedule="halving").validated().final_candidates == 2
    assert SynthesisConfig(task="x").validated().final_candidates == 1
    assert not (tmp_path / "runs").exists()


def test_device_auto_takes_cuda_only_where_it_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert resolve_device("cpu", "sac") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", "sac") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", "sac", 256) == "cuda"
    assert resolve_device("auto", "ppo", 256) == "cpu"
    assert resolve_device("auto", "ppo", 4096) == "cuda"
    assert resolve_device("auto") == "cuda"
    assert os.environ.get("MUJOCO_GL") == "egl"


def test_continuation_of_a_task_the_worker_has_not_registered(tmp_path: Path) -> None:
    import dataclasses

    from rewardsmith.tasks import get_task

    custom = dataclasses.replace(get_task("inverted-pendulum"), name="my-own-balance")  # in no registry
    out = tmp_path / "t"
    train(custom, "builtin", steps=512, n_envs=2, eval_episodes=1, out=out)
    more = train(custom, "builtin", steps=1024, n_envs=2, eval_episodes=1, out=out, continue_from=out)
    assert more.continued_from == 512 and more.task == "my-own-balance"


def test_ppo_minibatch_divides_the_rollout_of_short_rungs() -> None:
    from rewardsmith.trainer import _batch_size

    assert _batch_size(2048) == 256  # the usual rollout: unchanged
    assert _batch_size(2000) == 250  # a 2,000-step rung with 8 envs: no truncated minibatch
    assert _batch_size(100) == 100
    assert 2000 % _batch_size(2000) == 0 and 3000 % _batch_size(3000) == 0
