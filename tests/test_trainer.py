"""The Trainer: learning in parts, checkpoints, periodic evaluation, extra callbacks and wrappers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnvWrapper

from rewardsmith.callbacks import find_wrapper
from rewardsmith.errors import TrainingError
from rewardsmith.program import load_program
from rewardsmith.train import train
from rewardsmith.trainer import Trainer
from rewardsmith.wrappers import RewardVecEnv

PENDULUM = '''
def compute_reward(pole_angle, cart_position, action):
    upright = 1.0 - abs(pole_angle)
    centre = -0.01 * cart_position * cart_position
    return upright + centre, {"upright": upright, "centre": centre}
'''
# NaN whenever the cart is left of the centre: about half the states of a random policy
NAN_LEFT = '''
def compute_reward(pole_angle, cart_position):
    r = 1.0 - abs(pole_angle) + 0.0 * np.log(cart_position)
    return r, {"upright": r}
'''
SMALL = {"n_envs": 2, "budget": 512}  # PPO: 256 steps per env per rollout = 512 steps per rollout


class CountResets(VecEnvWrapper):
    """An extra VecEnv wrapper that counts resets and steps."""

    def __init__(self, venv) -> None:
        super().__init__(venv)
        self.resets = self.steps = 0

    def reset(self):
        self.resets += 1
        return self.venv.reset()

    def step_wait(self):
        self.steps += self.num_envs
        return self.venv.step_wait()


class Heartbeat(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def _on_step(self) -> bool:
        self.seen.append(self.num_timesteps)
        return True


def test_learn_twice_continues(tmp_path: Path) -> None:
    beat = Heartbeat()
    trainer = Trainer("inverted-pendulum", PENDULUM, wrappers=[CountResets], callbacks=[beat], **SMALL)
    counter = find_wrapper(trainer.venv, CountResets)
    trainer.learn(512)
    assert trainer.num_timesteps == 512
    trainer.learn(1024)
    assert trainer.num_timesteps == 512 + 1024  # a + b, nothing retrained
    assert counter.steps == 512 + 1024
    assert counter.resets == 1  # the second call went on from the last observations
    assert beat.seen[0] == 2 and beat.seen[-1] == 1536 and np.all(np.diff(beat.seen) == 2)
    steps = [p["step"] for p in trainer.fitness.curve]
    assert steps == sorted(steps) and steps[-1] == 1536
    episodes = trainer.evaluate(2)
    assert len(episodes) == 2
    trainer.close()


def test_save_load_continues_with_the_same_state(tmp_path: Path) -> None:
    trainer = Trainer("inverted-pendulum", PENDULUM, eval_every=256, eval_episodes=2, **SMALL)
    trainer.learn(512)
    trainer.save(tmp_path)
    for name in ("model.zip", "vecnormalize.pkl", "reward.py", "trainer.json"):
        assert (tmp_path / name).is_file(), name
    obs_mean = trainer.venv.obs_rms.mean.copy()
    params = {k: v.clone() for k, v in trainer.model.policy.state_dict().items()}
    curve = list(trainer.fitness.curve)
    trainer.close()

    loaded = Trainer.load(tmp_path)
    assert loaded.num_timesteps == 512
    assert loaded.label == trainer.label and loaded.algo == "ppo"
    np.testing.assert_array_equal(loaded.venv.obs_rms.mean, obs_mean)
    for k, v in loaded.model.policy.state_dict().items():
        assert np.array_equal(v.numpy(), params[k].numpy()), k
    assert loaded.fitness.curve == curve and len(loaded.periodic.evals) == 2
    loaded.learn(512)
    assert loaded.num_timesteps == 1024
    assert [e["step"] for e in loaded.periodic.evals] == [256, 512, 768, 1024]
    assert loaded.result(episodes=[1.0]).steps == 1024
    loaded.close()


def test_periodic_evaluation_goes_into_the_curve(tmp_path: Path) -> None:
    result_trainer = Trainer("inverted-pendulum", PENDULUM, eval_every=256, eval_episodes=2, **SMALL)
    result_trainer.learn(512)
    evals = result_trainer.periodic.evals
    assert [e["step"] for e in evals] == [256, 512]
    assert all(e["eval_episodes"] == 2 and e["eval_fitness_mean"] >= 1 for e in evals)
    with_eval = [p for p in result_trainer.fitness.curve if "eval_fitness_mean" in p]
    assert [p["step"] for p in with_eval] == [256, 512]
    result = result_trainer.result(episodes=[3.0, 5.0])
    assert [p["step"] for p in result.curve if "eval_fitness_mean" in p] == [256, 512]
    assert result.fitness_mean == 4.0
    result_trainer.close()


def test_nonfinite_count_is_per_training() -> None:
    """Training twice with one program object reports the same count each time, not a running total."""
    program = load_program(NAN_LEFT, "inverted-pendulum", run_probe=False)
    first = train("inverted-pendulum", program, steps=512, n_envs=2, eval_episodes=1, save=False, tensorboard=False)
    second = train("inverted-pendulum", program, steps=512, n_envs=2, eval_episodes=1, save=False,
                   tensorboard=False)
    assert first.nonfinite > 0
    assert second.nonfinite == first.nonfinite
    assert program.nonfinite_count == 2 * first.nonfinite  # the program's own total still runs on


def test_train_takes_callbacks_and_wrappers_and_writes_a_checkpoint(tmp_path: Path) -> None:
    beat = Heartbeat()
    wrapped: list[CountResets] = []

    def wrap(venv):
        wrapped.append(CountResets(venv))
        return wrapped[-1]

    result = train("inverted-pendulum", PENDULUM, steps=512, n_envs=2, out=tmp_path, eval_episodes=2,
                   callbacks=[beat], wrappers=[wrap], tensorboard=False)
    assert beat.seen[-1] == 512 and wrapped[0].steps == 512
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["task_version"] == result.task_version >= 1
    assert (tmp_path / "reward.py").read_text() == load_program(PENDULUM, "inverted-pendulum", run_probe=False).source
    assert not list(tmp_path.glob(".*.tmp*"))  # atomic writes leave no temporary files
    loaded = Trainer.load(tmp_path)  # a train() output is a checkpoint too
    assert loaded.num_timesteps == 512 and find_wrapper(loaded.venv, RewardVecEnv) is not None
    loaded.close()


def test_builtin_reward_and_errors(tmp_path: Path) -> None:
    trainer = Trainer("inverted-pendulum", "builtin", **SMALL)
    assert trainer.source is None and find_wrapper(trainer.venv, RewardVecEnv) is None
    trainer.learn(512)
    trainer.save(tmp_path)
    assert Trainer.load(tmp_path).label == "builtin"
    assert trainer.nonfinite == 0
    with pytest.raises(TrainingError, match="steps must be positive"):
        trainer.learn(0)
    with pytest.raises(TrainingError, match="not a Trainer checkpoint"):
        Trainer.load(tmp_path / "nothing")
    trainer.close()
