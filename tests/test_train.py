"""Training with reward programs: results, files, logs, errors; real solving runs are `slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardsmith.errors import RewardProgramError, TrainingError
from rewardsmith.train import train

REPO = Path(__file__).resolve().parents[1]
PENDULUM = '''
def compute_reward(pole_angle, cart_position, action):
    upright = 1.0 - abs(pole_angle)
    centre = -0.01 * cart_position * cart_position
    effort = -0.001 * np.sum(action * action)
    return upright + centre + effort, {"upright": upright, "centre": centre, "effort": effort}
'''


def test_train_with_program_writes_everything(tmp_path: Path) -> None:
    result = train("inverted-pendulum", PENDULUM, steps=512, n_envs=2, out=tmp_path, eval_episodes=3)
    assert result.steps >= 512
    assert len(result.episodes) == 3
    assert result.fitness_mean > 0 and result.success_rate is not None
    assert result.curve and set(result.curve[-1]["components"]) == {"upright", "centre", "effort"}
    assert result.curve[-1]["episodes"] > 0
    for name in ("model.zip", "vecnormalize.pkl", "reward.py", "result.json"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "result.json").read_text())
    for key in ("fitness_mean", "fitness_std", "success_rate", "steps", "wall_s"):
        assert key in saved
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = next((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"reward/upright", "reward/centre", "reward/effort", "fitness/mean"} <= tags


def test_train_sparse_and_builtin(tmp_path: Path) -> None:
    sparse = train("inverted-pendulum", "sparse", steps=256, n_envs=2, out=tmp_path / "s", eval_episodes=2)
    assert sparse.reward == "sparse"
    builtin = train("inverted-pendulum", "builtin", steps=256, n_envs=2, out=tmp_path / "b", eval_episodes=2)
    assert builtin.reward == "builtin" and builtin.nonfinite == 0


def test_train_sac_runs(tmp_path: Path) -> None:
    result = train("inverted-pendulum", "builtin", steps=200, algo="sac", n_envs=1, out=tmp_path,
                   eval_episodes=1, algo_kwargs={"learning_starts": 50, "batch_size": 32})
    assert result.algo == "sac" and result.steps >= 200


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "halfcheetah-backward", "reward": "builtin"}, TrainingError, "no built-in reward"),
        ({"task": "inverted-pendulum", "algo": "dqn"}, TrainingError, "unknown algorithm"),
        ({"task": "inverted-pendulum", "steps": -5}, TrainingError, "steps must be positive"),
        ({"task": "inverted-pendulum", "device": "tpu"}, TrainingError, "unknown device"),
        ({"task": "inverted-pendulum", "reward": "def compute_reward(x):\n    return 1.0, {}\n"},
         RewardProgramError, "not a variable"),
    ],
    ids=["no-builtin", "algo", "steps", "device", "bad-program"],
)
def test_train_errors(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        train(**{"steps": 64, "out": tmp_path, **kwargs})


@pytest.mark.slow
def test_inverted_pendulum_builtin_solves_at_default_budget(tmp_path: Path) -> None:
    result = train("inverted-pendulum", "builtin", seed=0, out=tmp_path)
    assert result.success_rate is not None and result.success_rate >= 0.9, result.episodes


@pytest.mark.slow
def test_handwritten_backward_reward_runs_backwards(tmp_path: Path) -> None:
    reward = REPO / "benchmarks" / "rewards" / "halfcheetah_backward.py"
    result = train("halfcheetah-backward", reward, seed=0, out=tmp_path)
    assert result.fitness_mean > 100.0, result.episodes  # metres travelled backwards in 1000 steps
