"""Exploration bonuses through the Trainer, its checkpoints, `rewardsmith train` and `synthesize --intrinsic`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rewardsmith.cli import app
from rewardsmith.errors import RewardsmithError
from rewardsmith.loop import SynthesisConfig, synthesize
from rewardsmith.trainer import Checkpoint, Trainer

TINY = {"task": "inverted-pendulum", "steps": 512, "workers": 1, "n_envs": 2, "eval_episodes": 2}


def test_trainer_trains_with_a_named_bonus_and_its_checkpoint_keeps_it(tmp_path: Path) -> None:
    with Trainer("inverted-pendulum", "sparse", n_envs=2, budget=256, intrinsic="rnd", intrinsic_coef=0.5) as t:
        assert t.intrinsic is not None and t.intrinsic in t.callbacks
        t.learn(256)
        t.save(tmp_path)
    meta = Checkpoint.read(tmp_path)
    assert (meta.intrinsic, meta.intrinsic_coef) == ("rnd", 0.5)
    with Trainer.load(tmp_path) as again:  # a continued training keeps its bonus
        assert again.intrinsic is not None and again.intrinsic_coef == 0.5
        again.learn(256)
        assert again.num_timesteps >= 512


def test_unknown_bonus_is_one_clear_error() -> None:
    with pytest.raises(RewardsmithError, match="unknown intrinsic bonus 'bogus'.*rnd"):
        SynthesisConfig(**TINY, intrinsic="bogus").validated()
    result = CliRunner().invoke(app, ["train", "--task", "inverted-pendulum", "--sparse", "--intrinsic", "bogus"])
    assert result.exit_code == 1
    assert "unknown intrinsic bonus 'bogus'" in result.output


def test_synthesize_trains_every_candidate_with_the_bonus_and_baselines_without(tmp_path: Path) -> None:
    out = tmp_path / "run"
    synthesize(SynthesisConfig(**TINY, iterations=1, samples=1, final_seeds=1, screen="off",
                               intrinsic="rnd"), out=out)
    metas = {p.parent.relative_to(out).as_posix(): json.loads(p.read_text()) for p in out.rglob("trainer.json")}
    candidates = {k: m for k, m in metas.items() if k.startswith(("rounds/", "final/"))}
    baselines = {k: m for k, m in metas.items() if k.startswith("baselines/")}
    assert candidates and baselines, sorted(metas)
    assert all(m["intrinsic"] == "rnd" for m in candidates.values())
    assert all(m["intrinsic"] is None for m in baselines.values())


def test_a_checkpoint_with_another_bonus_is_not_continued(tmp_path: Path) -> None:
    from rewardsmith.tasks import get_task

    task = get_task("inverted-pendulum")
    with Trainer(task, "sparse", n_envs=2, budget=256, intrinsic="rnd") as t:
        t.learn(256)
        t.save(tmp_path)
    kw = {"algo": None, "seed": 0, "steps": 512}
    assert Trainer.resume_compatible(tmp_path, task, "sparse", intrinsic="simhash", **kw) is None
    assert Trainer.resume_compatible(tmp_path, task, "sparse", **kw) is None
    again = Trainer.resume_compatible(tmp_path, task, "sparse", intrinsic="rnd", **kw)
    assert again is not None and again.num_timesteps >= 256
    again.close()


@pytest.mark.parametrize("name", ["rnd", "simhash", "oni"])
def test_a_continued_training_keeps_the_bonus_state(tmp_path: Path, name: str) -> None:
    """The checkpoint holds the bonus's models and statistics: a loaded Trainer scores the same
    transitions as the saved one did, and a second learn() does not rebuild the models."""
    import numpy as np

    with Trainer("point-maze", "sparse", n_envs=2, budget=512, intrinsic=name) as t:
        t.learn(256)
        first = t.intrinsic.bonus.state_dict()
        t.learn(256)  # SB3 re-initialises callbacks at every learn(): the bonus must not be rebuilt
        assert t.intrinsic.updates == 2
        batch = t.intrinsic.last_batch
        before = t.intrinsic.bonus.compute(batch)
        t.save(tmp_path)
    assert (tmp_path / "intrinsic.pt").is_file()
    if name == "simhash":
        assert len(t.intrinsic.bonus.counts) >= len(first["counts"])
    with Trainer.load(tmp_path) as again:
        again.intrinsic.init_callback(again.model)  # what learn() does first: set the bonus up, restore it
        assert again.intrinsic.updates == 2
        np.testing.assert_allclose(again.intrinsic.bonus.compute(batch), before, rtol=1e-5, atol=1e-7)


def test_every_bonus_trains_on_the_maze_through_the_trainer() -> None:
    from rewardsmith.intrinsic import bonus_names

    for name in bonus_names():
        with Trainer("point-maze", "sparse", n_envs=2, budget=256, intrinsic=name) as t:
            t.learn(256)
            assert t.intrinsic.updates >= 1 and t.intrinsic.last_bonus is not None, name
