"""Preference-based RL: an agent trained on a reward model learned from a teacher's preferences.

The loop (``rewardsmith prefs``), in ``updates + 1`` iterations:

0. segments of uniform-random rollouts; the first queries (``first`` of the budget) are asked,
   the reward model fitted, the agent built on :class:`~rewardsmith.preference.model.LearnedReward`;
1. each iteration trains the agent a slice of the budget, rolls out the current (stochastic)
   policy, cuts segments, selects queries (uniform / disagreement / entropy over oversampled
   candidate pairs), asks the teacher, refits the ensemble on every label so far, and for SAC
   relabels the whole replay buffer with the new reward (PEBBLE). PPO reads the reward live
   through the same :class:`~rewardsmith.wrappers.RewardVecEnv` as reward programs.

Ground truth is logged beside the learned reward at every iteration (the deterministic policy's
true fitness, the correlation of learned and true per-step reward), in ``progress.jsonl``, in
TensorBoard (``tb/``) and in ``summary.json``.

Run directory (every file written atomically; a killed run resumes with ``resume=``)::

    manifest.json         the settings and versions
    events.jsonl          start, iteration, resume, interrupted, done
    queries/iNN.pending.npz  the pairs about to be asked (so a resumed run asks the same ones)
    queries/iNN.npz       the pairs and their labels (NaN = skipped)
    reward_model.pt       the ensemble after the latest fit
    agent/                the agent's checkpoint (Trainer.save; SAC with its replay buffer)
    progress.jsonl, state.json, summary.json, tb/
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.errors import RewardsmithError
from rewardsmith.fsutil import atomic_write_json
from rewardsmith.preference.collect import (
    Rollout,
    collect,
    cut_segments,
    segment_length,
    trainer_policy,
)
from rewardsmith.preference.model import LearnedReward, RewardModel
from rewardsmith.preference.queries import SELECTIONS, query_schedule, select_queries
from rewardsmith.preference.segments import PreferenceBatch, Segment
from rewardsmith.preference.teaching import TEACHER_NAMES, make_teacher
from rewardsmith.rundir import RunDir
from rewardsmith.tasks import get_task


@dataclass
class PrefsConfig:
    """Settings of one PbRL run (every option of ``rewardsmith prefs``)."""

    task: str = ""
    teacher: str = "scripted"  #: scripted, human or llm
    teacher_kind: str = "oracle"  #: scripted teachers: oracle, boltzmann, mistake, skip, equal, myopic
    queries: int = 200  #: total pairs asked
    steps: int | None = None  #: agent training steps (default: the task's budget)
    algo: str | None = None  #: ppo or sac (default: the task's)
    seed: int = 0
    updates: int = 10  #: reward updates during training (queries are asked before each)
    first: float = 0.3  #: share of the queries asked on random-policy segments before training
    schedule: str = "hyperbolic"  #: constant or hyperbolic split of the rest over the updates
    selection: str = "disagreement"  #: uniform, disagreement or entropy
    oversample: int = 10  #: candidate pairs scored per query asked
    segment: int = 50  #: steps per segment (shortened when episodes are shorter)
    episodes: int = 8  #: rollouts collected per iteration to cut segments from
    ensemble: int = 3  #: reward-model members
    standardize: bool = True  #: rescale the learned reward to mean 0, std 1 on the labelled states after each fit
    reward_epochs: int = 100  #: most epochs per fit (early stopping on held-out accuracy)
    n_envs: int | None = None  #: parallel envs (default: 4 for PPO, 1 for SAC)
    eval_episodes: int = 5  #: deterministic episodes measured at every iteration
    device: str = "cpu"

    def validate(self) -> PrefsConfig:
        if not self.task:
            raise RewardsmithError("prefs needs a task: --task NAME (see `rewardsmith tasks`)")
        get_task(self.task)
        if self.teacher not in TEACHER_NAMES:
            raise RewardsmithError(f"unknown teacher {self.teacher!r}: use {', '.join(TEACHER_NAMES)}")
        if self.selection not in SELECTIONS:
            raise RewardsmithError(f"unknown selection {self.selection!r}: use {', '.join(SELECTIONS)}")
        if self.algo is not None and self.algo not in ("ppo", "sac"):
            raise RewardsmithError(f"unknown algorithm {self.algo!r}: use ppo or sac")
        for name in ("queries", "episodes", "ensemble", "segment", "oversample"):
            if int(getattr(self, name)) < 1:
                raise RewardsmithError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.updates < 0 or (self.steps is not None and self.steps < 1):
            raise RewardsmithError("updates must be >= 0 and steps >= 1")
        if self.queries < self.updates + 1:
            raise RewardsmithError(f"{self.queries} queries cannot be spread over {self.updates + 1} "
                                   "iterations: ask more queries or fewer updates")
        query_schedule(self.queries, self.updates, self.first, self.schedule)  # checks schedule/first
        return self


def _save_pairs(path: Path, left: list[Segment], right: list[Segment], label: np.ndarray | None) -> None:
    arrays: dict[str, np.ndarray] = {
        "left": np.stack([s.states for s in left]), "right": np.stack([s.states for s in right]),
        "left_rewards": np.stack([s.rewards for s in left]), "right_rewards": np.stack([s.rewards for s in right]),
        "left_actions": np.stack([s.actions for s in left]), "right_actions": np.stack([s.actions for s in right]),
        "left_fitness": np.array([s.fitness for s in left], dtype=float),
        "right_fitness": np.array([s.fitness for s in right], dtype=float)}
    if left[0].snapshots is not None:
        arrays["left_snapshots"] = np.stack([s.snapshots for s in left])
        arrays["right_snapshots"] = np.stack([s.snapshots for s in right])
    if label is not None:
        arrays["label"] = np.asarray(label, dtype=float)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_pairs(path: Path) -> tuple[list[Segment], list[Segment], np.ndarray | None] | None:
    try:
        with np.load(path) as d:
            a = {k: np.array(d[k]) for k in d.files}
    except (OSError, ValueError, KeyError):
        return None  # missing or cut short: asked again

    def side(name: str) -> list[Segment]:
        snaps = a.get(f"{name}_snapshots")
        return [Segment(a[name][i], a[f"{name}_actions"][i], rewards=a[f"{name}_rewards"][i],
                        fitness=float(a[f"{name}_fitness"][i]), snapshots=None if snaps is None else snaps[i])
                for i in range(len(a[name]))]

    return side("left"), side("right"), a.get("label")


class PrefsRun:
    """One PbRL run in a run directory; :meth:`run` trains to the end (resuming what is there)."""

    def __init__(self, config: PrefsConfig, out: str | Path, teacher: Any = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.config = config.validate()
        self.task = get_task(config.task)
        self.run_dir = RunDir(out)
        self.path = self.run_dir.path
        self.log = log or (lambda _line: None)
        self.algo = (config.algo or self.task.default_algo).lower()
        self.steps = int(config.steps or self.task.default_steps)
        self.n_envs = int(config.n_envs or (4 if self.algo == "ppo" else 1))
        self.plan = query_schedule(config.queries, config.updates, config.first, config.schedule)
        chunk = self.steps // (config.updates + 1)
        self.targets = [chunk * (i + 1) for i in range(config.updates)] + [self.steps]
        self.teacher = teacher if teacher is not None else self._teacher()
        self.model: RewardModel | None = None
        self.trainer: Any = None
        self.source: LearnedReward | None = None  # the reward the agent trains on (one object, refitted)
        self.labelled: list[tuple[list[Segment], list[Segment], np.ndarray]] = []
        self._tb: Any = None
        self._last_rollouts: list[Rollout] | None = None  # this iteration's, for the reward correlation

    # -- pieces ----------------------------------------------------------------------------
    def _teacher(self) -> Any:
        c = self.config
        if c.teacher == "scripted":
            return make_teacher("scripted", self.task, kind=c.teacher_kind, seed=c.seed)
        if c.teacher == "human":
            return make_teacher("human", self.task, answers=self.path / "answers.jsonl", gif_dir=self.path / "gifs")
        return make_teacher("llm", self.task)

    def _rollouts(self, i: int) -> list[Rollout]:
        policy = None if i == 0 else trainer_policy(self.trainer, deterministic=False)
        return collect(self.task, policy, self.config.episodes, self.config.seed * 1000 + 100 * i,
                       snapshots=self.config.teacher == "human", origin="random" if i == 0 else f"iter{i}")

    def _queries(self, i: int, rng: np.random.Generator) -> tuple[list[Segment], list[Segment]]:
        pending = self.path / "queries" / f"i{i:02d}.pending.npz"
        saved = _load_pairs(pending)
        if saved is not None:
            return saved[0], saved[1]
        rollouts = self._last_rollouts = self._rollouts(i)
        length = segment_length(rollouts, self.config.segment)
        pool = cut_segments(rollouts, length, max(2, 4 * self.plan[i] // len(rollouts) + 1), rng)
        method = "uniform" if self.model is None else self.config.selection
        left, right, _ = select_queries(pool, self.plan[i], model=self.model, method=method,
                                        oversample=self.config.oversample, rng=rng)
        _save_pairs(pending, left, right, None)
        return left, right

    def _ask(self, i: int, rng: np.random.Generator) -> np.ndarray:
        done = _load_pairs(self.path / "queries" / f"i{i:02d}.npz")
        if done is not None and done[2] is not None:
            left, right, label = done
        else:
            left, right = self._queries(i, rng)
            label = np.asarray(self.teacher.compare(left, right), dtype=float)
            _save_pairs(self.path / "queries" / f"i{i:02d}.npz", left, right, label)
            (self.path / "queries" / f"i{i:02d}.pending.npz").unlink(missing_ok=True)
        self.labelled.append((left, right, label))
        return label

    def _batch(self) -> PreferenceBatch | None:
        left = [s for lft, _, lab in self.labelled for s, y in zip(lft, lab) if np.isfinite(y)]
        right = [s for _, rgt, lab in self.labelled for s, y in zip(rgt, lab) if np.isfinite(y)]
        labels = [y for _, _, lab in self.labelled for y in lab if np.isfinite(y)]
        if len({s.length for s in left + right}) > 1:  # episodes got shorter: keep the common length
            n = min(s.length for s in left + right)
            left = [Segment(s.states[:n], s.actions[:n] if s.actions is not None else None) for s in left]
            right = [Segment(s.states[:n], s.actions[:n] if s.actions is not None else None) for s in right]
        return PreferenceBatch.from_segments(left, right, labels) if labels else None

    def _fit(self) -> dict[str, Any]:
        batch = self._batch()
        if self.model is None:
            self.model = RewardModel(self.task.state_size, k=self.config.ensemble, seed=self.config.seed,
                                     device=self.config.device)
        if batch is None:
            return {"n": 0}
        hist = self.model.fit(batch, epochs=self.config.reward_epochs)
        self._standardize()
        self.model.save(self.path / ".reward_model.tmp.pt")
        (self.path / ".reward_model.tmp.pt").replace(self.path / "reward_model.pt")
        best = hist["best_epoch"]
        val_acc = hist["val_acc"][best - 1] if hist["val_acc"] else float("nan")
        return {"n": len(batch), "val_acc": None if not np.isfinite(val_acc) else round(float(val_acc), 4),
                "epochs": len(hist["epoch"])}

    def _standardize(self) -> None:
        """The learned reward on one scale across fits: mean 0, std 1 over the labelled segments' states."""
        if self.source is None:
            self.source = LearnedReward(self.model, self.task)  # type: ignore[arg-type]
        states = [s.states for lft, rgt, _ in self.labelled for s in (*lft, *rgt)]
        if states and self.config.standardize:
            self.source.standardize(np.concatenate(states))

    def _relabel(self) -> int:
        from rewardsmith.replay import relabel_arrays

        rs = getattr(self.trainer, "replay_states", None)
        if self.algo != "sac" or rs is None or rs.arrays is None:
            return 0
        return relabel_arrays(self.trainer.model.replay_buffer, self.trainer.source, rs.arrays)

    def _build_trainer(self, resume: bool) -> None:
        from rewardsmith.trainer import Trainer

        if self.source is None:
            self.source = LearnedReward(self.model, self.task)  # type: ignore[arg-type]
        source = self.source
        agent = self.path / "agent"
        if resume and (agent / "model.zip").is_file():
            self.trainer = Trainer.load(agent, reward=source, device=self.config.device,
                                        tensorboard_dir=self.path / "tb", keep_replay=self.algo == "sac")
            if self.algo == "sac" and (agent / "replay_buffer.pkl").is_file():
                self.trainer.model.load_replay_buffer(agent / "replay_buffer.pkl")
        else:
            self.trainer = Trainer(self.task, source, algo=self.algo, seed=self.config.seed, n_envs=self.n_envs,
                                   device=self.config.device, budget=self.steps, tensorboard_dir=self.path / "tb",
                                   keep_replay=self.algo == "sac")

    def _ground_truth(self, rollouts: list[Rollout] | None = None) -> dict[str, Any]:
        fit = self.trainer.evaluate(self.config.eval_episodes)
        row: dict[str, Any] = {"fitness_mean": float(np.mean(fit)), "fitness_std": float(np.std(fit))}
        if rollouts:
            states = np.concatenate([r.states for r in rollouts])
            true = np.concatenate([r.rewards for r in rollouts])
            learned = self.model.predict(states)  # type: ignore[union-attr]
            # on the segments' rollouts (the policy before this iteration's training)
            row["reward_corr"] = float(np.corrcoef(learned, true)[0, 1]) \
                if np.std(learned) > 0 and np.std(true) > 0 else None  # a constant reward has none
        return row

    def _scalar(self, name: str, value: Any, step: int) -> None:
        if value is None:
            return
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.path / "tb" / "prefs"))
        self._tb.add_scalar(name, float(value), step)

    # -- the loop --------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        from rewardsmith.loop import _versions

        c = self.config
        state = self.run_dir.read_json("state.json") if resume else None
        start = 0 if not isinstance(state, dict) else int(state["iteration"]) + 1
        if not resume:
            self.run_dir.write_json("manifest.json", {"kind": "prefs", "config": dataclasses.asdict(c),
                                                      "task": self.task.ref, "versions": _versions()})
        self.run_dir.event("resume" if resume else "start", iteration=start)
        rng = np.random.default_rng([c.seed, 7])
        for i in range(start):  # labels already asked: the dataset, as it was
            done = _load_pairs(self.path / "queries" / f"i{i:02d}.npz")
            if done is not None and done[2] is not None:
                self.labelled.append(done)  # type: ignore[arg-type]
        if start > 0 and (self.path / "reward_model.pt").is_file():
            self.model = RewardModel.load(self.path / "reward_model.pt", device=c.device)
            self._standardize()
            self._build_trainer(resume=True)
        if resume:
            kept = sum(int(np.isfinite(lab).sum()) for _, _, lab in self.labelled)
            self.log(f"resuming {self.path} at iteration {start}/{c.updates}: {kept} labels and "
                     f"{0 if self.trainer is None else self.trainer.num_timesteps} training steps kept")
        t0 = time.perf_counter()
        for i in range(start, c.updates + 1):
            rng = np.random.default_rng([c.seed, 7, i])
            label = self._ask(i, rng)
            fit = self._fit()
            if self.trainer is None:
                self._build_trainer(resume=resume)
            relabelled = self._relabel()
            need = self.targets[i] - self.trainer.num_timesteps
            if need > 0:
                self.trainer.learn(need)
            gt = self._ground_truth(self._last_rollouts)
            self._last_rollouts = None
            row = {"iteration": i, "steps": self.trainer.num_timesteps, "asked": len(label),
                   "answered": int(np.isfinite(label).sum()),
                   "queries_total": int(sum(np.isfinite(lab).sum() for _, _, lab in self.labelled)),
                   "reward_val_acc": fit.get("val_acc"), "relabelled": relabelled, **gt}
            self.trainer.save(self.path / "agent", replay_buffer=self.algo == "sac")
            with open(self.path / "progress.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            self.run_dir.write_json("state.json", {"iteration": i})
            self.run_dir.event("iteration", **row)
            for k in ("fitness_mean", "reward_corr", "reward_val_acc", "queries_total"):
                self._scalar(f"prefs/{k}", row.get(k), row["steps"])
            self.log(f"iteration {i}/{c.updates}: {row['steps']} steps, {row['queries_total']} labels, "
                     f"true fitness {row['fitness_mean']:.4g}, reward corr {_fmt(row.get('reward_corr'))}")
        return self._finish(time.perf_counter() - t0)

    def _finish(self, wall_s: float) -> dict[str, Any]:
        rows = [json.loads(line) for line in (self.path / "progress.jsonl").read_text().splitlines() if line.strip()]
        final = self.trainer.evaluate(self.task.eval_episodes)
        summary = {"task": self.task.ref, "algo": self.algo, "teacher": self.config.teacher,
                   "teacher_kind": self.config.teacher_kind, "selection": self.config.selection,
                   "seed": self.config.seed, "steps": self.trainer.num_timesteps,
                   "queries": rows[-1]["queries_total"] if rows else 0,
                   "final_fitness_mean": float(np.mean(final)), "final_fitness_std": float(np.std(final)),
                   "final_episodes": [float(x) for x in final], "progress": rows, "wall_s": round(wall_s, 2)}
        atomic_write_json(self.path / "summary.json", summary)
        self.run_dir.event("done", final_fitness_mean=summary["final_fitness_mean"])
        if self._tb is not None:
            self._tb.close()
        self.trainer.close()
        self.close_teacher()
        return summary

    def close_teacher(self) -> None:
        """Release what the teacher holds (a human teacher's rendering env)."""
        close = getattr(self.teacher, "close", None)
        if callable(close):
            close()


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def prefs(config: PrefsConfig | None = None, out: str | Path | None = None, resume: str | Path | None = None,
          teacher: Any = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run PbRL into ``out`` (default ``runs/prefs-<task>-<time>``), or continue the run in ``resume``."""
    if resume is not None:
        manifest = RunDir(resume).read_json("manifest.json")
        if not isinstance(manifest, dict) or manifest.get("kind") != "prefs":
            raise RewardsmithError(f"{resume} is not a prefs run directory (no readable manifest.json)")
        config = PrefsConfig(**manifest["config"])
        return PrefsRun(config, resume, teacher=teacher, log=log).run(resume=True)
    if config is None:
        raise RewardsmithError("prefs needs a config or resume=")
    out = out or Path("runs") / f"prefs-{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    return PrefsRun(config, out, teacher=teacher, log=log).run()


__all__ = ["PrefsConfig", "PrefsRun", "prefs"]
