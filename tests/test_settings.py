"""Settings, seeds and the end-of-run lines: one source of defaults, disjoint seeds, no crash on None."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from typer.testing import CliRunner

from rewardsmith.candidate import candidate_seed, final_seeds
from rewardsmith.cli import app, summary_lines
from rewardsmith.errors import RewardsmithError
from rewardsmith.settings import SynthesisConfig, default_for, help_for


def test_candidate_seeds_never_meet_the_final_seeds() -> None:
    base = 7
    search = {candidate_seed(base, r, i) for r in range(60) for i in range(64)}
    assert len(search) == 60 * 64
    final = set(final_seeds(base, 999))
    assert not search & final
    seeds = sorted(search | final)
    assert min(b - a for a, b in itertools.pairwise(seeds)) >= 100, "8 envs of one training never reuse another's"
    # the old scheme (seed + 100*round + index vs seed + 1000 + k) collided from round 10 on
    assert (base + 100 * 10 + 0) == (base + 1000 + 0)


@pytest.mark.parametrize("env", [{}, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, {"OPENAI_API_KEY": "sk-x"}])
def test_library_and_cli_resolve_the_same_default_coder(monkeypatch: pytest.MonkeyPatch, env: dict) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    expected = "openai" if env else "offline"
    assert SynthesisConfig(task="inverted-pendulum").coder == default_for("coder") == "auto"
    assert SynthesisConfig(task="inverted-pendulum").validated().coder == expected


def test_cli_takes_defaults_and_help_from_the_settings() -> None:
    import typer.main

    command = typer.main.get_command(app).commands["synthesize"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    for field in dataclasses.fields(SynthesisConfig):
        if field.name in params and field.name != "task":  # the CLI requires --task (no default)
            assert params[field.name].default == default_for(field.name), field.name
            assert params[field.name].help == help_for(field.name), field.name
    result = CliRunner().invoke(app, ["synthesize", "--help"], terminal_width=200)
    assert "--time-limit" in result.output and "--executor" in result.output


@pytest.mark.parametrize("bad, match", [({"samples": 0}, "samples must be at least 1"),
                                        ({"samples": 1000}, "below 1000"),
                                        ({"time_limit": -1.0}, "time_limit must be positive"),
                                        ({"coder": "opnai"}, "unknown coder 'opnai'. Did you mean 'openai'"),
                                        ({"coder": "replay"}, "needs the run directory"),
                                        ({"executor": "slurm"}, "unknown executor"),
                                        ({"eval_episodes": 0}, "eval_episodes must be at least 1"),
                                        ({"n_envs": 101}, "at most 100")])
def test_bad_settings_are_clear(bad: dict, match: str) -> None:
    with pytest.raises(RewardsmithError, match=match):
        SynthesisConfig(task="inverted-pendulum", **bad).validated()


def test_bad_settings_leave_no_run_directory_behind(tmp_path) -> None:
    from rewardsmith.loop import synthesize

    with pytest.raises(RewardsmithError, match="unknown coder"):
        synthesize(SynthesisConfig(task="inverted-pendulum", coder="opnai"), out=tmp_path / "run")
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_selection_ignores_non_finite_fitness() -> None:
    from rewardsmith.candidate import Candidate
    from rewardsmith.stages import select_by_fitness

    history = [Candidate(0, 0, fitness_mean=float("nan")), Candidate(0, 1, fitness_mean=2.0),
               Candidate(0, 2, fitness_mean=1.0)]
    assert select_by_fitness(history) is history[1]
    assert select_by_fitness([Candidate(0, 0)]) is None


def test_summary_lines_when_every_final_retraining_failed() -> None:
    summary = {"best": {"fitness_mean": None, "fitness_std": None, "fitness_iqm": None, "ci95": None,
                        "search_fitness": 12.5, "source": "run/best_reward.py"},
               "baselines": {"human": None, "sparse": None}, "hns": None,
               "hns_note": "undefined: every re-training of the best program failed",
               "final_failures": {"best": ["final/seed0: out of time: killed after 61 s"]},
               "tokens": {"prompt": 0, "completion": 0}, "requests": 1, "wall_s": None}
    lines = summary_lines(summary)
    assert "every final re-training failed" in lines[0] and "12.5" in lines[0]
    assert any("out of time" in line for line in lines)
