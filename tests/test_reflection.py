"""Reflection statistics and failure modes (the statistics helpers: test_stats.py)."""

from __future__ import annotations

import pytest

from rewardsmith import get_task
from rewardsmith.prompting import render_prompt
from rewardsmith.reflection import reflect


def _point(step: int, fitness: float, length: float, comps: dict[str, float], ends: dict[str, int],
           sat: float = 0.1) -> dict:
    return {"step": step, "fitness_mean": fitness, "episode_length_mean": length, "terminations": ends,
            "components": comps, "components_abs": {k: abs(v) for k, v in comps.items()},
            "components_max": {k: v + (0 if k == "alive" else 1) for k, v in comps.items()},
            "components_min": {k: v - (0 if k == "alive" else 1) for k, v in comps.items()},
            "action_saturation": sat}


def test_reflection_names_failure_modes() -> None:
    task = get_task("hopper-forward")
    curve = [_point(1000 * i, 1.0 - 0.1 * i, 40.0, {"forward": 0.01 * i, "alive": 1.0, "hack": 50.0 + 5 * i},
                    {"terminated": 10}, sat=0.8) for i in range(12)]
    result = {"curve": curve, "fitness_mean": 0.0, "fitness_std": 0.1, "success_rate": None, "nonfinite": 3}
    stats = reflect(task, result, ["forward", "alive", "hack"])
    assert len(stats["components"]["forward"]["values"]) == 10
    assert stats["components"]["hack"]["share"] > 0.8
    assert stats["components"]["hack"]["corr_with_fitness"] == pytest.approx(-1.0)
    modes = " | ".join(stats["failure_modes"])
    assert "'hack' dominates" in modes
    assert "'hack' anti-correlates" in modes
    assert "'alive' is constant" in modes and "survival bonus" in modes
    assert "episodes end early" in modes
    assert "3 reward values were NaN/inf" in modes
    assert "actions sit at their limits 80%" in modes
    assert "did not improve" in modes


def test_reflection_healthy_run_has_no_failure_modes() -> None:
    task = get_task("halfcheetah-forward")
    curve = [_point(1000 * i, 0.5 * i, 1000.0, {"forward": 0.1 * i, "ctrl": -0.05 - 0.001 * i},
                    {"truncated": 4}) for i in range(8)]
    stats = reflect(task, {"curve": curve, "fitness_mean": 3.0, "fitness_std": 0.1, "nonfinite": 0},
                    ["forward", "ctrl"])
    assert stats["failure_modes"] == []



def _render(task, stats: dict) -> str:
    best = {"source": "def reward(s):\n    ...", "fitness_mean": 1.0, "fitness_std": 0.1, "stats": stats}
    return render_prompt("reflection", task=task, best=best, others=[])


def _additive_curve(gap: float | None) -> list[dict]:
    curve = []
    for i in range(6):
        comps = {"forward": 3.0 + 0.1 * i, "ctrl": -1.0}
        point = _point(1000 * i, 0.5 * i, 1000.0, comps, {"truncated": 4})
        if gap is not None:
            point["reward_mean"] = sum(comps.values()) + gap
        curve.append(point)
    return curve


def test_shares_are_of_the_summed_absolute_components() -> None:
    task = get_task("halfcheetah-forward")
    curve = [_point(1000 * i, 0.5 * i, 1000.0, {"forward": 3.0, "ctrl": -1.0}, {"truncated": 4}) for i in range(5)]
    for p in curve:  # the per-step |value| mean differs from |mean| when a term changes sign
        p["components_abs"] = {"forward": 3.0, "ctrl": 2.0}
    comps = reflect(task, {"curve": curve, "nonfinite": 0}, ["forward", "ctrl"])["components"]
    assert comps["forward"]["share"] == pytest.approx(3.0 / 5.0)
    assert comps["ctrl"]["share"] == pytest.approx(2.0 / 5.0)
    assert comps["ctrl"]["mean_abs"] == pytest.approx(2.0) and comps["ctrl"]["mean"] == pytest.approx(-1.0)
    assert "share 60%" in _render(task, reflect(task, {"curve": curve, "nonfinite": 0}, ["forward", "ctrl"]))


def test_components_that_do_not_add_up_to_the_reward_are_flagged() -> None:
    task = get_task("halfcheetah-forward")
    stats = reflect(task, {"curve": _additive_curve(gap=4.0), "nonfinite": 0}, ["forward", "ctrl"])
    add = stats["additivity"]
    assert add["adds_up"] is False
    assert add["gap"] == pytest.approx(4.0)
    assert add["sum_of_means"] == pytest.approx(2.25)
    assert add["reward_mean"] == pytest.approx(6.25)
    assert any("do not add up" in m and "6.25" in m for m in stats["failure_modes"])
    text = _render(task, stats)
    assert "do NOT add up: gap 4" in text and "do not add up to the reward" in text


def test_components_that_add_up_are_not_flagged() -> None:
    task = get_task("halfcheetah-forward")
    stats = reflect(task, {"curve": _additive_curve(gap=1e-3), "nonfinite": 0}, ["forward", "ctrl"])
    assert stats["additivity"]["adds_up"] is True
    assert stats["failure_modes"] == []
    assert "they add up" in _render(task, stats)


def test_without_a_logged_reward_additivity_is_unknown() -> None:
    task = get_task("halfcheetah-forward")
    stats = reflect(task, {"curve": _additive_curve(gap=None), "nonfinite": 0}, ["forward", "ctrl"])
    add = stats["additivity"]
    assert add["adds_up"] is None and add["reward_mean"] is None
    assert add["sum_of_means"] == pytest.approx(2.25)
    assert not any("add up" in m for m in stats["failure_modes"])
    assert "was not logged" in _render(task, stats)
    assert reflect(task, {"curve": _additive_curve(gap=None), "nonfinite": 0})["additivity"] is None


def test_reflection_prompt_renders_stats_saved_before_additivity() -> None:
    task = get_task("halfcheetah-forward")
    stats = reflect(task, {"curve": _additive_curve(gap=None), "nonfinite": 0}, ["forward", "ctrl"])
    del stats["additivity"]  # a run directory written by an earlier version
    text = _render(task, stats)
    assert "forward:" in text and "add up" not in text


def test_training_logs_the_total_so_the_reflection_sees_a_missing_component() -> None:
    from rewardsmith.train import train

    hidden = ("def compute_reward(pole_angle, action):\n"
              "    upright = 1.0 - abs(pole_angle)\n"
              "    return upright + 1.0, {'upright': upright}\n")
    result = train("inverted-pendulum", hidden, steps=1024, n_envs=2, save=False, tensorboard=False,
                   eval_episodes=1)
    point = result.curve[-1]
    assert point["reward_mean"] == pytest.approx(point["components"]["upright"] + 1.0)
    stats = reflect(get_task("inverted-pendulum"), result, ["upright"])
    assert stats["additivity"]["adds_up"] is False
    assert any("do not add up" in mode for mode in stats["failure_modes"])
