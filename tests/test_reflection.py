"""Reflection statistics and failure modes (the statistics helpers: test_stats.py)."""

from __future__ import annotations

import pytest

from rewardsmith import get_task
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

