"""Potential programs (compute_potential through the check pipeline), the shaped sparse reward
they train, and `synthesize --shaping potential` with the offline coder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rewardsmith import get_task
from rewardsmith.cli import app
from rewardsmith.errors import RewardProgramError, RewardsmithError
from rewardsmith.loop import SynthesisConfig, synthesize
from rewardsmith.shaping.programs import check_potential, is_potential_source, load_potential, shaped_sparse
from rewardsmith.sources import Transitions
from rewardsmith.state import join_state
from rewardsmith.trainer import Trainer

POTENTIAL = "def compute_potential(position, goal):\n    return -np.sqrt(np.sum((position - goal) ** 2))\n"


def _states(task, positions):
    n = len(positions)
    return join_state(task, {"position": np.asarray(positions, float), "velocity": np.zeros((n, 2)),
                             "goal": np.tile([-0.6, 0.4], (n, 1)), "distance_to_goal": np.zeros(n),
                             "action": np.zeros((n, 2))})


def test_a_potential_program_is_checked_compiled_and_evaluated_on_states() -> None:
    task = get_task("point-maze")
    result = check_potential(POTENTIAL, task)
    assert result.ok and result.components == ["potential"] and result.probe is not None and result.probe.ok
    phi = result.program
    values = phi(_states(task, [[-0.6, 0.4], [0.0, 0.0], [0.6, -0.4]]))
    np.testing.assert_allclose(values, [0.0, -np.hypot(0.6, 0.4), -np.hypot(1.2, 0.8)])
    assert phi.source == POTENTIAL and is_potential_source(POTENTIAL) and not is_potential_source("sparse")


@pytest.mark.parametrize("source, stage, match", [
    ("def compute_potential(position):\n    return position[0], {'x': position[0]}\n", "signature",
     "returns one float"),
    ("def compute_potential(position):\n    return position[0]\n\n"
     "def compute_reward(position):\n    return 1.0, {'a': 1.0}\n", "signature", "not compute_reward"),
    ("def compute_potential(posiiton):\n    return posiiton[0]\n", "signature", "Did you mean 'position'"),
    ("def compute_potential(position):\n    return np.random.rand()\n", "validate", "random"),
    ("def compute_potential(position):\n    return position\n", "compile", "array"),
    ("def compute_potential(position:\n", "parse", "syntax"),
])
def test_bad_potentials_get_the_reward_programs_precise_errors(source: str, stage: str, match: str) -> None:
    result = check_potential(source, "point-maze")
    assert not result.ok and result.stage == stage, result.error
    assert match in result.error
    with pytest.raises(RewardProgramError):
        load_potential(source, "point-maze")


def test_shaped_sparse_is_sparse_plus_gamma_phi_next_minus_phi() -> None:
    task = get_task("point-maze")
    source = shaped_sparse(POTENTIAL, task, gamma=0.9)
    assert source.components == ["reached", "shaping", "potential"]
    prev = _states(task, [[0.0, 0.0], [-0.6, 0.35]])
    nxt = _states(task, [[0.1, 0.0], [-0.6, 0.4]])
    nxt[:, task.slices()["distance_to_goal"]] = [[0.7], [0.0]]
    total, comps = source.compute(Transitions(prev, None, nxt, np.array([False, True]), np.array([False, False])))
    phi_prev, phi_next = -np.hypot(prev[:, 0] + 0.6, prev[:, 1] - 0.4), -np.hypot(nxt[:, 0] + 0.6, nxt[:, 1] - 0.4)
    f = 0.9 * phi_next * np.array([1.0, 0.0]) - phi_prev  # Phi(s') = 0 at the true termination
    np.testing.assert_allclose(comps[:, 1], f)
    np.testing.assert_allclose(total, f + np.array([0.0, 1.0]))


def test_a_trainer_with_a_potential_saves_it_and_continues_with_it(tmp_path: Path) -> None:
    with Trainer("point-maze", POTENTIAL, n_envs=2, budget=256, algo_kwargs={"gamma": 0.95}) as t:
        assert t.source.gamma == 0.95 and t.source.components == ["reached", "shaping", "potential"]
        t.learn(256)
        t.save(tmp_path)
    assert (tmp_path / "reward.py").read_text() == POTENTIAL
    assert Trainer.resume_compatible(tmp_path, get_task("point-maze"), POTENTIAL, algo=None, seed=0, steps=512,
                                     n_envs=2) is not None
    with Trainer.load(tmp_path) as again:
        assert again.source.components == ["reached", "shaping", "potential"] and again.source.gamma == 0.95
        again.learn(256)
        assert again.num_timesteps >= 512


def test_cli_checks_and_trains_a_potential_file(tmp_path: Path) -> None:
    good, bad = tmp_path / "phi.py", tmp_path / "bad.py"
    good.write_text(POTENTIAL)
    bad.write_text("def compute_potential(position):\n    return position, {}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["check", str(good), "--task", "point-maze"]).exit_code == 0
    result = runner.invoke(app, ["check", str(bad), "--task", "point-maze"])
    assert result.exit_code == 1 and "returns one float" in result.output
    result = runner.invoke(app, ["train", "--task", "point-maze", "--reward", str(bad), "--steps", "64"])
    assert result.exit_code == 1 and "returns one float" in result.output


def test_unknown_shaping_is_a_clear_error() -> None:
    with pytest.raises(RewardsmithError, match="unknown shaping 'pbrs'"):
        SynthesisConfig(task="point-maze", shaping="pbrs").validated()


def test_synthesize_shaping_potential_asks_for_potentials_and_trains_sparse_plus_shaping(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = synthesize(SynthesisConfig(task="point-maze", shaping="potential", coder="offline", iterations=1,
                                         samples=2, steps=512, workers=1, n_envs=2, eval_episodes=1,
                                         final_seeds=1, baselines=False), out=out)
    prompt = json.loads((out / "rounds" / "r00" / "prompt.json").read_text())
    assert "SHAPING POTENTIAL" in prompt[0]["content"] and "def compute_potential(" in prompt[1]["content"]
    results = json.loads((out / "rounds" / "r00" / "results.json").read_text())
    assert [c["status"] for c in results] == ["trained", "trained"]
    for c in results:
        folder = out / "rounds" / "r00" / f"c{c['index']:02d}"
        assert "def compute_potential(" in (folder / "reward.py").read_text()
        trained = json.loads((folder / "trainer.json").read_text())
        assert set(trained["curve"][-1]["components"]) == {"reached", "shaping", "potential"}
    assert "def compute_potential(" in (out / "best_reward.py").read_text()
    assert summary["best"] is not None
