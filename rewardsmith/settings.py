"""The settings of ``rewardsmith synthesize``: one documented dataclass.

The CLI takes every default and help text from :class:`SynthesisConfig` (``help_for``,
``default_for``), so the library call ``synthesize(SynthesisConfig(task=...))`` and the command
``rewardsmith synthesize --task ...`` behave the same when given the same (or no) options.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from rewardsmith.errors import RewardsmithError

#: the executors ``executor`` may name.
EXECUTORS = ("local", "ray")
#: the schedules ``schedule`` may name.
SCHEDULES = ("full", "halving")
#: what ``screen`` may be.
SCREENS = ("off", "flag", "reject")
#: what ``shaping`` may be.
SHAPINGS = ("none", "potential")
#: what ``select`` may be.
SELECTIONS = ("fitness", "preference")
#: the teachers ``teacher`` may name.
TEACHERS = ("scripted", "human", "llm")


def _opt(default: Any, help: str, **kw: Any) -> Any:
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class SynthesisConfig:
    """Settings of one synthesis run (every option of ``rewardsmith synthesize``)."""

    task: str = _opt("", "Task to design a reward for (`name` or `name@version`; see `rewardsmith tasks`).")
    coder: str = _opt("auto", "offline, openai or replay; auto = openai when OPENAI_BASE_URL / OPENAI_API_KEY "
                              "is set, else the built-in offline coder.")
    iterations: int = _opt(3, "Rounds of the loop.")
    samples: int = _opt(4, "Programs asked for per round.")
    steps: int | None = _opt(None, "Training steps per candidate (default: the task's budget).")
    seed: int = _opt(0, "Base seed: candidates train on seed+100000*(round+1)+100*index, the final re-training "
                        "and baselines on seed+100*k (100 apart: env i of a training uses seed+i).")
    workers: int | None = _opt(None, "Parallel trainings (default: the CPU cores).")
    executor: str = _opt("local", "Where trainings run: local (a process pool on this machine) or ray (Ray tasks "
                                  "on a cluster or a local Ray instance; pip install 'rewardsmith[ray]').")
    address: str | None = _opt(None, "Ray cluster to join (ray executor; default: $RAY_ADDRESS, else start a local "
                                     "Ray instance). Run Ray only on a trusted network.")
    cpus_per_job: float = _opt(1.0, "CPUs each training reserves (ray executor).")
    gpus_per_job: float = _opt(0.0, "GPU fraction each training reserves (ray executor).")
    device: str = _opt("auto", "Torch device of the trainings: auto (CUDA for SAC or large batches when a GPU is "
                               "there, else CPU), cpu or cuda.")
    schedule: str = _opt("full", "full (every candidate trains the whole budget) or halving (successive halving: "
                                 "every candidate trains a short budget, the better part continues from its "
                                 "checkpoint up to the full budget).")
    halving_eta: int = _opt(2, "Successive halving: keep the best 1/eta of the candidates at each rung.")
    halving_min_fraction: float = _opt(0.25, "Successive halving: the first rung's budget as a fraction of the "
                                             "full budget.")
    final_candidates: int | None = _opt(None, "Candidates re-trained on the final seeds, the best of them by IQM "
                                              "chosen (default: 1 with the full schedule, 2 with halving).")
    warm_start: bool = _opt(False, "From round 2 on, start each candidate from the previous best policy (and, for "
                                   "SAC, its replay buffer relabelled with the new reward) instead of from scratch.")
    screen: str = _opt("reject", "Pre-screen accepted programs on stored trajectories before training: off, flag "
                                 "(verdicts only) or reject (constant, non-finite and duplicate rewards are not "
                                 "trained).")
    intrinsic: str | None = _opt(None, "Train every candidate with this exploration bonus added to its reward "
                                        "(rewardsmith.intrinsic: rnd, icm, simhash, ...); the baselines train "
                                        "without it. Default: none.")
    intrinsic_coef: float | None = _opt(None, "Coefficient of the exploration bonus (default: the bonus's own).")
    shaping: str = _opt("none", "none (the coder writes rewards) or potential (the coder writes a shaping potential "
                                "Phi(s), and candidates train on the task's sparse reward plus "
                                "gamma * Phi(s') - Phi(s); the pre-screen is off).")
    select: str = _opt("fitness", "How each round's best is chosen: fitness (the task's measured fitness) or "
                                  "preference (ICPL: a teacher ranks the candidates' rollouts pairwise; the coder "
                                  "gets the ranking and the preferred and rejected programs, never the fitness).")
    teacher: str = _opt("scripted", "Who ranks the rollouts with --select preference: scripted (an oracle over the "
                                    "true fitness), human (GIFs, answers typed in the terminal) or llm (the coder's "
                                    "endpoint reads summaries of the states).")
    time_limit: float | None = _opt(None, "Seconds one training may take before it is killed and reported as "
                                          "out of time (default: derived from the budget and the measured "
                                          "step rate).")
    final_seeds: int = _opt(3, "Fresh seeds to re-train the best program (and the baselines) on.")
    baselines: bool = _opt(True, "Train the human (built-in) and sparse baselines at the same budget and seeds.")
    repair_rounds: int = _opt(1, "Repair requests per rejected program.")
    algo: str | None = _opt(None, "ppo or sac (default: the task's).")
    n_envs: int = _opt(8, "Environments per training.")
    eval_episodes: int | None = _opt(None, "Evaluation episodes per training (default: the task's).")
    feedback: str | None = _opt(None, "Human feedback added to every round's prompt.")
    model: str | None = _opt(None, "LLM model name (openai coder).")
    base_url: str | None = _opt(None, "OpenAI-compatible endpoint (default: $OPENAI_BASE_URL).")
    temperature: float = _opt(1.0, "Sampling temperature.")
    max_tokens: int | None = _opt(None, "Token budget of the run (prompt + completion).")
    no_cache: bool = _opt(False, "Bypass the LLM response cache.")
    prompts_dir: str | None = _opt(None, "Folder of .j2 templates overriding the shipped ones by name.")
    replay_dir: str | None = _opt(None, "Run directory to replay (with the replay coder).")
    gif_frames: int = _opt(40, "Frames per rollout GIF (interactive runs).")
    stop_when_solved: bool = _opt(True, "Stop early when the best program reaches the task's maximum fitness.")

    def validated(self) -> SynthesisConfig:
        """A copy with ``auto`` resolved and every value checked (raises RewardsmithError)."""
        from rewardsmith.coders import default_coder_kind

        problems = []
        if self.n_envs > 100:
            problems.append(f"n_envs must be at most 100 (seeds are 100 apart), got {self.n_envs}")
        for name in ("iterations", "samples", "final_seeds", "n_envs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.samples > 999 or self.final_seeds > 999:
            problems.append("samples and final_seeds must be below 1000 (seeds would collide)")
        if self.repair_rounds < 0:
            problems.append(f"repair_rounds must be >= 0 (got {self.repair_rounds})")
        if self.steps is not None and self.steps < 1:
            problems.append(f"steps must be positive (got {self.steps})")
        if self.time_limit is not None and self.time_limit <= 0:
            problems.append(f"time_limit must be positive seconds (got {self.time_limit})")
        if self.eval_episodes is not None and self.eval_episodes < 1:
            problems.append(f"eval_episodes must be at least 1 (got {self.eval_episodes})")
        if self.workers is not None and self.workers < 1:
            problems.append(f"workers must be at least 1 (got {self.workers})")
        if self.schedule not in SCHEDULES:
            problems.append(f"unknown schedule {self.schedule!r}: use {', '.join(SCHEDULES)}")
        if self.screen not in SCREENS:
            problems.append(f"unknown screen {self.screen!r}: use {', '.join(SCREENS)}")
        if self.halving_eta < 2:
            problems.append(f"halving_eta must be at least 2 (got {self.halving_eta})")
        if not 0 < self.halving_min_fraction <= 1:
            problems.append(f"halving_min_fraction must be in (0, 1] (got {self.halving_min_fraction})")
        if self.final_candidates is not None and self.final_candidates < 1:
            problems.append(f"final_candidates must be at least 1 (got {self.final_candidates})")
        if self.cpus_per_job <= 0 or self.gpus_per_job < 0:
            problems.append("cpus_per_job must be positive and gpus_per_job non-negative")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            problems.append(f"unknown device {self.device!r}: use auto, cpu or cuda")
        if self.executor not in EXECUTORS:
            problems.append(f"unknown executor {self.executor!r}: use {', '.join(EXECUTORS)}")
        if self.intrinsic is not None:
            from rewardsmith.intrinsic import bonus_names

            if self.intrinsic.lower() not in bonus_names():
                problems.append(f"unknown intrinsic bonus {self.intrinsic!r}: use {', '.join(bonus_names())}")
        if self.shaping not in SHAPINGS:
            problems.append(f"unknown shaping {self.shaping!r}: use {', '.join(SHAPINGS)}")
        elif self.shaping == "potential" and self.task:
            from rewardsmith.tasks import get_task

            try:
                if not get_task(self.task).sparse_reward:
                    problems.append(f"shaping potential trains the task's sparse reward plus the shaping, but task "
                                    f"{self.task!r} defines no sparse reward")
            except RewardsmithError:
                pass  # an unknown task is reported where the task is resolved
        if self.select not in SELECTIONS:
            problems.append(f"unknown select {self.select!r}: use {', '.join(SELECTIONS)}")
        if self.teacher not in TEACHERS:
            problems.append(f"unknown teacher {self.teacher!r}: use {', '.join(TEACHERS)}")
        if self.select == "preference" and self.schedule == "halving":
            problems.append("select preference needs schedule full: successive halving cuts candidates by fitness")
        if self.intrinsic_coef is not None and self.intrinsic_coef < 0:
            problems.append(f"intrinsic_coef must be non-negative (got {self.intrinsic_coef})")
        coder = self.coder
        if coder == "auto":
            coder = "replay" if self.replay_dir else default_coder_kind()
        from rewardsmith.coders import CODER_KINDS, unknown_coder_message

        if coder not in CODER_KINDS:
            problems.append(unknown_coder_message(coder).rstrip("."))
        if coder == "replay" and not self.replay_dir:
            problems.append("the replay coder needs the run directory to replay: pass --replay")
        if problems:
            raise RewardsmithError("; ".join(problems))
        final = self.final_candidates or (2 if self.schedule == "halving" else 1)
        return dataclasses.replace(self, coder=coder, final_candidates=final,
                                   workers=self.workers or max(1, os.cpu_count() or 1))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthesisConfig:
        """From a manifest's ``config`` (unknown keys of other versions are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _field(name: str) -> dataclasses.Field:
    for f in dataclasses.fields(SynthesisConfig):
        if f.name == name:
            return f
    raise KeyError(name)


def help_for(name: str) -> str:
    """The help text of setting ``name``."""
    return _field(name).metadata["help"]


def default_for(name: str) -> Any:
    """The default of setting ``name``."""
    f = _field(name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


__all__ = ["EXECUTORS", "SCHEDULES", "SCREENS", "SELECTIONS", "TEACHERS", "SynthesisConfig", "default_for", "help_for"]
