"""SAC warm starts: the replay buffer is saved with its reward states and relabelled with the new reward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewardsmith.errors import TrainingError
from rewardsmith.replay import STATES_FILE, relabel_replay
from rewardsmith.tasks import get_task
from rewardsmith.train import train
from rewardsmith.trainer import Trainer

SAC = {"algo": "sac", "n_envs": 2, "eval_episodes": 1,
       "algo_kwargs": {"learning_starts": 50, "batch_size": 32, "buffer_size": 5000}}
UPRIGHT = '''
def compute_reward(pole_angle):
    upright = 1.0 - abs(pole_angle)
    return upright, {"upright": upright}
'''
CENTRE = '''
def compute_reward(cart_position, action):
    centre = -cart_position * cart_position - 0.1 * action[0] * action[0]
    return centre, {"centre": centre}
'''


def test_sac_warm_start_relabels_the_previous_buffer(tmp_path: Path) -> None:
    from rewardsmith.program import load_program
    from rewardsmith.wrappers import relabel

    task = get_task("inverted-pendulum")
    src = tmp_path / "src"
    first = train(task, UPRIGHT, steps=200, seed=0, out=src, keep_replay=True, **SAC)
    assert (src / "replay_buffer.pkl").is_file() and (src / STATES_FILE).is_file()
    with np.load(src / STATES_FILE) as data:
        states, prev = data["state"], data["prev_state"]
        n = states.shape[0] * states.shape[1]
    assert states.shape[1] == 2 and n == first.steps
    old = Trainer.load(src)
    old_rewards = old.model.replay_buffer.rewards[: states.shape[0]].copy()
    old.close()
    # the stored rewards are the first program's, computed on the recorded states
    upright, _ = relabel(load_program(UPRIGHT, task), states.reshape(n, -1), prev_states=prev.reshape(n, -1))
    assert np.allclose(old_rewards.reshape(-1), upright, atol=1e-5)

    warm = Trainer.warm_start(src, task, CENTRE, seed=5, keep_replay=True, **{k: v for k, v in SAC.items()
                                                                            if k != "eval_episodes"})
    try:
        assert warm.replay_relabelled == n
        new_rewards = warm.model.replay_buffer.rewards[: states.shape[0]].reshape(-1)
        centre, _ = relabel(load_program(CENTRE, task), states.reshape(n, -1), prev_states=prev.reshape(n, -1))
        assert np.allclose(new_rewards, centre, atol=1e-5) and not np.allclose(new_rewards, upright, atol=1e-3)
        warm.learn(100)  # goes on filling the relabelled buffer
        assert warm.model.replay_buffer.pos > states.shape[0]
    finally:
        warm.close()


def test_states_that_do_not_match_the_buffer_are_refused(tmp_path: Path) -> None:
    task = get_task("inverted-pendulum")
    a, b = tmp_path / "a", tmp_path / "b"
    train(task, UPRIGHT, steps=200, seed=0, out=a, keep_replay=True, **SAC)
    train(task, UPRIGHT, steps=300, seed=1, out=b, keep_replay=True, **SAC)
    (a / STATES_FILE).write_bytes((b / STATES_FILE).read_bytes())
    t = Trainer.load(a)
    try:
        with pytest.raises(TrainingError, match="not the same training"):
            relabel_replay(t.model, t.source, a)
    finally:
        t.close()
    (a / STATES_FILE).unlink()
    warm = Trainer.warm_start(a, task, CENTRE, algo="sac", n_envs=2)  # no states: the buffer is not loaded
    try:
        assert warm.replay_relabelled == 0 and warm.model.replay_buffer.pos == 0
    finally:
        warm.close()
