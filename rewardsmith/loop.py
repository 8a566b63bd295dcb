"""The reward-coder loop (Eureka / Text2Reward style): ``rewardsmith synthesize``.

Each round: **propose** (the coder writes K programs from the task, the reflection on the best so
far and human feedback) -> **accept** (extract, check, bounded repair) -> **evaluate** (an
:class:`~rewardsmith.executor.Executor` trains the accepted ones, each with a time limit) ->
**select** (the best by fitness, or with ``select="preference"`` the teacher's choice from a
pairwise ranking of the rollouts: :mod:`rewardsmith.icpl`) -> **reflect** (statistics, or the
ranking with the preferred and rejected programs, that the coder reads next round). At the
end, **finalize** re-trains the best on fresh seeds beside the human and sparse baselines. The
stages live in :mod:`rewardsmith.stages` and :mod:`rewardsmith.final`; this module composes them
and owns the run directory, so a killed run resumes with ``resume=DIR`` without retraining
finished candidates or resending cached requests. UI (progress bars, round tables, prompts for
feedback) comes in through :class:`LoopHooks`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rewardsmith import __version__
from rewardsmith.candidate import Candidate
from rewardsmith.coders.base import Coder, CoderContext
from rewardsmith.errors import RewardsmithError
from rewardsmith.executor import Executor, JobOutcome, TrainJob, make_executor
from rewardsmith.prompting import render_prompt
from rewardsmith.rundir import RunDir
from rewardsmith.settings import SynthesisConfig
from rewardsmith.stages import accept, build_messages, evaluate, propose, select_by_fitness
from rewardsmith.tasks import TaskSpec, get_task

Progress = Callable[[str, int], ContextManager[Callable[[JobOutcome], None]]]


@dataclass
class LoopHooks:
    """Where the loop talks to its user (the CLI supplies rich versions).

    Attributes:
        log: progress lines.
        progress: ``progress(label, total)`` -> a context manager yielding ``advance(outcome)``.
        round_done: called with ``(round, candidates, best so far)`` after each round.
        ask_feedback: called with ``(round, candidates)``; returns human feedback or None.
    """

    log: Callable[[str], None] = print
    progress: Progress | None = None
    round_done: Callable[[int, list[Candidate], Candidate | None], None] | None = None
    ask_feedback: Callable[[int, list[Candidate]], str | None] | None = None


@contextlib.contextmanager
def _no_progress(_label: str, _total: int) -> Iterator[Callable[[JobOutcome], None]]:
    yield lambda _outcome: None


class Synthesizer:
    """Runs the loop. Use :func:`synthesize` unless you need the pieces."""

    def __init__(self, config: SynthesisConfig, run: RunDir, coder: Coder | None = None,
                 hooks: LoopHooks | None = None, executor: Executor | None = None, teacher: Any = None) -> None:
        self.config = config.validated()
        self.task: TaskSpec = get_task(self.config.task)
        self.run = run
        self.hooks = hooks or LoopHooks()
        self.log = self.hooks.log
        self.coder = coder or make_loop_coder(self.config, run)
        self.executor = executor or make_executor(
            self.config.executor, workers=self.config.workers, time_limit_s=self.config.time_limit,
            address=self.config.address, cpus_per_job=self.config.cpus_per_job,
            gpus_per_job=self.config.gpus_per_job)
        self.steps = int(self.config.steps or self.task.default_steps)
        self.history: list[Candidate] = []
        self.feedback: list[str] = [self.config.feedback] if self.config.feedback else []
        self._asked = set()  # rounds whose feedback is already in the run (restored on resume)
        for event in run.events():
            if event.get("event") == "human_feedback" and event.get("text"):
                self.feedback.append(str(event["text"]))
                self._asked.add(event.get("round"))
        self._teacher = teacher
        self._selector: Any = None
        self.preferred: Candidate | None = None  # select="preference": the teacher's choice so far
        self.ranking: Any = None  # ... and the latest ranking (rewardsmith.icpl.Ranking)
        self.rankings: list[dict[str, Any]] = []  # one row per ranked round, for summary.json
        self._feedback_cache: tuple[Any, dict[str, Any] | None] = (None, None)

    # -- helpers -------------------------------------------------------------------------------
    def _render(self, name: str, **ctx: Any) -> str:
        return render_prompt(name, prompts_dir=self.config.prompts_dir, **ctx)

    @property
    def by_preference(self) -> bool:
        """Whether the loop selects by a teacher's preferences (ICPL) instead of fitness."""
        return self.config.select == "preference"

    def best(self) -> Candidate | None:
        """The best trained candidate so far: by fitness (among those trained for the full budget),
        or with ``select="preference"`` the teacher's choice (:mod:`rewardsmith.icpl`)."""
        if self.by_preference:
            return self.preferred
        return select_by_fitness(self.history, budget=self.steps)

    def _preference_feedback(self) -> dict[str, Any] | None:
        """The latest ranking as ``icpl.j2``'s context (None before any ranked round)."""
        if self.ranking is None or self._selector is None:
            return None
        key = (self.ranking.round, None if self.preferred is None else self.preferred.name)
        if self._feedback_cache[0] != key:  # relabels two episodes: once per ranked round
            self._feedback_cache = (key, self._selector.feedback(self.ranking, self.history, self.preferred))
        return self._feedback_cache[1]

    def _context(self, round_idx: int, **kw: Any) -> CoderContext:
        blind = self.by_preference  # the coder must not see the true fitness: a human teacher gives none
        hist = [{"source": c.source, "fitness": None if blind else c.fitness_mean, "ok": c.trained,
                 "error": c.error, "reflection": None if blind else c.stats} for c in self.history if c.source]
        if blind and "preference" not in kw:
            from rewardsmith.icpl import coder_preference

            kw["preference"] = coder_preference(self._preference_feedback())
        return CoderContext(task=self.task, round=round_idx, seed=self.config.seed, history=hist,
                            human_feedback="\n".join(self.feedback) or None, shaping=self.config.shaping, **kw)

    def _job(self, reward: Any, seed: int, out: str, name: str, checked: bool = False) -> TrainJob:
        return TrainJob(name=name, task=self.task, reward=reward, steps=self.steps, seed=seed, out=out,
                        algo=self.config.algo, n_envs=self.config.n_envs, eval_episodes=self.config.eval_episodes,
                        time_limit_s=self.config.time_limit, checked=checked, device=self.config.device,
                        **self._bonus(reward))

    @property
    def _check(self) -> Callable[..., Any]:
        """How accepted code is checked: as a reward program, or (``--shaping potential``) a potential."""
        if self.config.shaping == "potential":
            from rewardsmith.shaping.programs import check_potential

            return check_potential
        from rewardsmith.program import check_program

        return check_program

    def _bonus(self, reward: Any) -> dict[str, Any]:
        """The exploration bonus of a job (``--intrinsic``): candidates train with it, baselines without."""
        if self.config.intrinsic is None or reward in ("builtin", "sparse"):
            return {}
        return {"intrinsic": self.config.intrinsic, "intrinsic_coef": self.config.intrinsic_coef}

    def _progress(self, label: str, total: int) -> ContextManager[Callable[[JobOutcome], None]]:
        return (self.hooks.progress or _no_progress)(label, total)

    # -- one round -----------------------------------------------------------------------------
    def run_round(self, round_idx: int, last_round: list[Candidate]) -> list[Candidate]:
        """Propose, accept, evaluate and reflect on one round's candidates."""
        rdir = f"rounds/r{round_idx:02d}"
        saved = self.run.read_json(f"{rdir}/candidates.json")
        if isinstance(saved, list):
            cands = [Candidate.from_dict(c) for c in saved]
            self.log(f"round {round_idx + 1}: resuming {len(cands)} candidates from {rdir}")
        else:
            pref = self._preference_feedback() if self.by_preference else None
            messages = build_messages(self.task, self._render, self.best(), last_round, self.feedback,
                                      shaping=self.config.shaping, preference=pref)
            self.run.write_json(f"{rdir}/prompt.json", messages)
            completions = propose(self.coder, messages, self.config.samples, self._context(round_idx))
            self.run.event("responses", round=round_idx, n=len(completions))
            cands = [accept(c, messages, round_idx, i, task=self.task, coder=self.coder, render=self._render,
                            repair_rounds=self.config.repair_rounds, context=self._context, check=self._check)
                     for i, c in enumerate(completions)]
            from rewardsmith.screen import screen_round

            # before training: reject or flag the new programs on the run's stored episodes
            if self.config.shaping == "none":
                screen_round(self.task, self.run, cands, self.history, self.config.screen, self.config.seed,
                             self.log)
            for c in cands:
                if c.source:
                    self.run.write_text(f"{rdir}/c{c.index:02d}/reward.py", c.source)
            self.run.write_json(f"{rdir}/candidates.json", [c.to_dict() for c in cands])
        for c in cands:
            if c.status == "rejected":
                self.log(f"  r{round_idx} c{c.index}: rejected ({c.stage}): {c.error}")
        self._train_round(round_idx, cands, rdir)
        for c in cands:
            if c.trained:
                short = (f" at {c.budget:,} of {self.steps:,} steps (stopped by successive halving)"
                         if c.budget is not None and c.budget < self.steps else "")
                self.log(f"  r{round_idx} c{c.index}: fitness {c.fitness_mean:.4g} ± {c.fitness_std or 0:.3g}{short}"
                         f" ({', '.join(c.components)})")
            elif c.status in ("failed", "timeout"):
                self.log(f"  r{round_idx} c{c.index}: {c.error}")
        self.run.write_json(f"{rdir}/results.json", [c.to_dict() for c in cands])
        self.run.event("round_done", round=round_idx, fitness=[c.fitness_mean for c in cands],
                       status=[c.status for c in cands])
        return cands

    def _round_job(self, round_idx: int) -> Callable[..., TrainJob]:
        """The job factory of a round's candidates: with ``warm_start``, from round 2 on every job
        starts from the best policy so far (its checkpoint folder), and SAC keeps its replay buffer
        (with its reward states) so that the next round can relabel it."""
        if not self.config.warm_start:
            return self._job
        best = self.best()
        init = None if best is None or round_idx == 0 else self.run.path / "rounds" / best.name
        if init is not None and not (init / "model.zip").is_file():
            self.log(f"round {round_idx + 1}: no checkpoint of {best.name} to warm-start from; training from scratch")
            init = None

        def job(*args: Any, **kw: Any) -> TrainJob:
            return dataclasses.replace(self._job(*args, **kw), keep_replay=True,
                                       init_from=None if init is None else str(init))

        return job

    def _train_round(self, round_idx: int, cands: list[Candidate], rdir: str) -> None:
        """Train the round's accepted candidates by the configured schedule."""
        from rewardsmith.schedule import evaluate_halving, planned_jobs

        n = sum(c.status not in ("rejected", "timeout") for c in cands)
        make_job = self._round_job(round_idx)
        if self.config.schedule == "halving":
            total = planned_jobs(n, self.steps, self.config.halving_eta, self.config.halving_min_fraction)
            with self._progress(f"round {round_idx + 1}: training (successive halving)", total) as advance:
                evaluate_halving(self.executor, cands, make_job, self.run.path / rdir, self.config.seed, self.task,
                                 self.steps, self.config.halving_eta, self.config.halving_min_fraction,
                                 on_done=advance,
                                 event=lambda name, **kw: self.run.event(name, round=round_idx, **kw))
            return
        with self._progress(f"round {round_idx + 1}: training", n) as advance:
            evaluate(self.executor, cands, make_job, self.run.path / rdir, self.config.seed, self.task,
                     on_done=advance)

    # -- preference selection (ICPL) ------------------------------------------------------------
    def selector(self) -> Any:
        """The preference-selection stage (:class:`rewardsmith.icpl.PreferenceSelector`), made on first use."""
        if self._selector is None:
            from rewardsmith.icpl import PreferenceSelector, make_loop_teacher

            teacher = self._teacher
            if teacher is None:
                teacher = make_loop_teacher(self.config.teacher, self.task, self.config.seed, coder=self.coder,
                                            run_path=self.run.path)
            # only the scripted teacher gets the true fitness; a human watches rollouts re-run with snapshots
            self._selector = PreferenceSelector(self.task, self.run.path, teacher,
                                                oracle=self.config.teacher == "scripted",
                                                rollouts=self.config.teacher == "human", log=self.log)
        return self._selector

    def select_preference(self, round_idx: int, cands: list[Candidate]) -> None:
        """Rank the round's trained candidates by the teacher and update the choice (saved labels are reused)."""
        ranking, choice = self.selector().select(round_idx, cands, self.preferred)
        if ranking is None:
            if any(c.trained for c in cands):
                self.log(f"round {round_idx + 1}: no stored episode to show the teacher; the choice stays")
            return
        self.ranking, self.preferred = ranking, choice
        self.rankings.append(ranking.summary_row(self.history))

    def step(self, round_idx: int, last_round: list[Candidate]) -> list[Candidate]:
        """One round (:meth:`run_round`), added to the history, then (preference mode) ranked and chosen."""
        cands = self.run_round(round_idx, last_round)
        self.history.extend(cands)
        if self.by_preference:
            self.select_preference(round_idx, cands)
        return cands

    def _solved(self) -> bool:
        """Whether no better program can exist: the fitness counts steps and every evaluation
        episode of the best candidate lasted the env's whole time limit."""
        from rewardsmith.reflection import max_episode_steps

        best = self.best()
        limit = max_episode_steps(self.task)
        return (best is not None and self.task.fitness.reduce == "length" and limit is not None
                and best.fitness_mean >= limit and (best.fitness_std if best.fitness_std is not None else 1.0) == 0.0)

    def _gifs(self, round_idx: int, cands: list[Candidate]) -> None:
        """Render a rollout GIF of each trained candidate (for interactive feedback)."""
        from rewardsmith.train import rollout_gif

        for c in cands:
            if not c.trained:
                continue
            cdir = self.run.path / f"rounds/r{round_idx:02d}/c{c.index:02d}"
            try:
                c.gif = str(rollout_gif(cdir, self.task, cdir / "rollout.gif", frames=self.config.gif_frames))
            except Exception as exc:  # rendering is a convenience: never fail the run for it
                c.gif = f"(no GIF: {type(exc).__name__}: {exc})"

    # -- the whole run -------------------------------------------------------------------------
    def run_all(self) -> dict[str, Any]:
        """Every round, the final re-training, the baselines and ``summary.json``."""
        from rewardsmith.final import finalize

        t0 = time.perf_counter()
        last: list[Candidate] = []
        for r in range(self.config.iterations):
            self.log(f"round {r + 1}/{self.config.iterations}: asking the {self.coder.name} coder for "
                     f"{self.config.samples} programs")
            last = self.step(r, last)
            if self.hooks.round_done is not None:
                self.hooks.round_done(r, last, self.best())
            if self.config.stop_when_solved and r + 1 < self.config.iterations and self._solved():
                self.log(f"round {r + 1}: the best program reaches the maximum possible fitness; stopping early")
                self.run.event("early_stop", round=r)
                break
            if self.hooks.ask_feedback is not None and r not in self._asked:
                self._gifs(r, last)
                text = self.hooks.ask_feedback(r, last)
                if text:
                    self.feedback.append(text)
                    self.run.event("human_feedback", round=r, text=text)
        best = self.best()
        if best is None:
            why = sorted({c.stage or "?" for c in self.history})
            raise RewardsmithError(f"no candidate could be trained (failed at: {', '.join(why)}; see "
                                   f"{self.run.path}/rounds/*/results.json)")
        from rewardsmith.candidate import final_seeds
        from rewardsmith.final import final_plans
        from rewardsmith.stages import top_candidates

        finalists = ([best] if self.by_preference else
                     top_candidates(self.history, self.config.final_candidates or 1, budget=self.steps))
        seeds_note = ", ".join(str(s) for s in final_seeds(self.config.seed, self.config.final_seeds))
        who = "the best program" if len(finalists) == 1 else f"the {len(finalists)} best programs"
        self.log(f"final: re-training {who} and the baselines on seeds {seeds_note}")
        n_final = self.config.final_seeds * len(final_plans(self.task, finalists, self.config.baselines))
        with self._progress("final re-training and baselines", n_final) as advance:
            summary = finalize(self.task, finalists, self.history, self.executor, self._job, self.run.path,
                               self.config.seed, self.config.final_seeds, self.config.baselines, on_done=advance)
        chosen = next((c for c in finalists if (c.round, c.index) == (summary["best"]["round"],
                                                                       summary["best"]["index"])), best)
        self.run.write_text("best_reward.py", _standalone(chosen.source or "", self.task))
        summary["compute"] = compute_spent(self.history, self.run.path, self.config.schedule)
        usage = self.coder.usage.to_dict()
        summary.update(coder=self.coder.name, steps_per_candidate=self.steps,
                       tokens={"prompt": usage["prompt_tokens"], "completion": usage["completion_tokens"]},
                       requests=usage["requests"], cache_hits=usage.get("cache_hits", 0),
                       wall_s=round(time.perf_counter() - t0, 1))
        summary["select"] = self.config.select
        if self.by_preference:
            from rewardsmith.icpl import preference_summary

            teacher = self.config.teacher if self._teacher is None else type(self._teacher).__name__
            summary["preference"] = preference_summary(best, self.history, self.rankings, teacher, self.steps)
        self.run.write_json("summary.json", summary)
        try:
            from rewardsmith.report import plot_run

            summary["report"] = str(plot_run(self.run.path))
            self.run.write_json("summary.json", summary)
        except Exception as exc:  # a figure is a convenience: never fail a finished run for it
            self.log(f"(no report.png: {type(exc).__name__}: {exc})")
        self.run.event("done", best=summary["best"]["fitness_mean"])
        return summary


def compute_spent(history: list[Candidate], run_path: Path, schedule: str) -> dict[str, Any]:
    """Environment steps the run trained: the search (each candidate's last budget: a continued
    training counts once; a killed one its steps until then) and the final re-trainings."""
    from rewardsmith.fsutil import read_json

    search = 0
    for c in history:
        if c.budget is not None:
            search += int(c.budget)
        elif c.status == "timeout":
            failure = read_json(run_path / "rounds" / c.name / "failure.json")
            search += int(failure.get("steps_done", 0)) if isinstance(failure, dict) else 0
    def steps_under(folder: str) -> int:
        total = 0
        for path in sorted((run_path / folder).rglob("result.json")):
            data = read_json(path)
            total += int(data.get("steps", 0)) if isinstance(data, dict) else 0
        return total

    final = steps_under("final")
    return {"schedule": schedule, "search_steps": search, "final_steps": final, "total_steps": search + final,
            "baseline_steps": steps_under("baselines")}


def _standalone(source: str, task: TaskSpec) -> str:
    header = (f'"""Best reward found by rewardsmith for task {task.ref!r}.\n\n'
              f"Signature: {task.signature}\n"
              '"""\n\nimport math\n\nimport numpy as np\n\n')
    body = "\n".join(line for line in source.splitlines()
                     if line.strip() not in ("import numpy as np", "import math"))
    return header + body.strip() + "\n"


def make_loop_coder(config: SynthesisConfig, run: RunDir) -> Coder:
    """The coder the (validated) config asks for, recording exchanges into the run directory."""
    from rewardsmith.coders import make_coder

    extra = {"seed": config.seed} if config.coder == "offline" else {}
    return make_coder(config.coder, model=config.model, base_url=config.base_url, temperature=config.temperature,
                      max_tokens=config.max_tokens, no_cache=config.no_cache, replay_dir=config.replay_dir,
                      record_dir=str(run.path), **extra)


def synthesize(config: SynthesisConfig | None = None, out: str | Path | None = None, resume: str | Path | None = None,
               coder: Coder | None = None, log: Callable[[str], None] = print, progress: bool = False,
               ask_feedback: Callable[[int, list[Candidate]], str | None] | None = None,
               hooks: LoopHooks | None = None, executor: Executor | None = None,
               teacher: Any = None) -> dict[str, Any]:
    """Run the loop; returns the summary (also in ``<out>/summary.json``).

    Args:
        config: the settings (ignored when resuming: the run's manifest is used).
        out: the run directory (default ``runs/<task>-<timestamp>``).
        resume: an earlier run directory to continue.
        coder: a coder object overriding ``config.coder``.
        log: where progress lines go (ignored when ``hooks`` is given).
        progress: show rich progress bars and a table per round on stderr (ignored with ``hooks``).
        ask_feedback: called after each round with the round's candidates; returns human feedback.
        hooks: every UI callback at once (see :class:`LoopHooks`).
        executor: where trainings run (default: ``config.executor``).
        teacher: a :class:`~rewardsmith.preference.teaching.SegmentTeacher` used instead of the one
            ``config.teacher`` names (with ``select="preference"``); its segments are still made for
            ``config.teacher``: with the true fitness as returns for ``scripted``, re-run with
            snapshots for ``human``.
    """
    if hooks is None:
        hooks = LoopHooks(log=log, ask_feedback=ask_feedback)
        if progress:
            from rewardsmith.ui import rich_progress, round_table_printer

            hooks.progress, hooks.round_done = rich_progress, round_table_printer
    if resume is not None:
        run = RunDir(resume)
        manifest = run.read_json("manifest.json")
        if not isinstance(manifest, dict) or "config" not in manifest:
            raise RewardsmithError(f"{resume} is not a rewardsmith run directory (no readable manifest.json)")
        config = SynthesisConfig.from_dict(manifest["config"])
        if config.task.endswith(".py") and not Path(config.task).is_absolute():  # the run's copy of a task file
            config = SynthesisConfig.from_dict({**asdict(config), "task": str(run.path / config.task)})
        run.event("resume")
    else:
        if config is None:
            raise RewardsmithError("synthesize needs a config or resume=DIR")
        task = get_task(config.task)
        task_file = config.task if config.task.endswith(".py") else None
        config = SynthesisConfig.from_dict({**asdict(config.validated()), "task": task.ref})
        run = RunDir(out or Path("runs") / f"{task.name}-{datetime.now():%Y%m%d-%H%M%S}")
        if (run.path / "manifest.json").exists():
            raise RewardsmithError(f"{run.path} already holds a run; use --resume {run.path} or another --out")
        pinned = asdict(config)
        if task_file is not None:  # a task file: the run keeps its own copy, which a resume registers again
            run.write_text("task.py", Path(task_file).read_text(encoding="utf-8"))
            pinned["task"] = "task.py"
        run.write_json("manifest.json", {"config": pinned, "versions": _versions(),
                                         "created": datetime.now().isoformat(timespec="seconds")})
        run.event("start", task=config.task, coder=config.coder)
    own_executor = executor is None
    loop = None
    try:
        loop = Synthesizer(config, run, coder=coder, hooks=hooks, executor=executor, teacher=teacher)
        return loop.run_all()
    except RewardsmithError as exc:
        run.event("error", message=str(exc))
        raise RewardsmithError(f"{exc} (nothing is lost: continue with --resume {run.path})") from exc
    except KeyboardInterrupt as exc:
        run.event("interrupted", message=str(exc))
        hooks.log(f"interrupted: every worker was stopped; continue with --resume {run.path}")
        raise
    finally:
        if own_executor and loop is not None:
            loop.executor.close()


def _versions() -> dict[str, str]:
    import gymnasium
    import mujoco
    import numba
    import stable_baselines3
    import torch

    return {"rewardsmith": __version__, "python": platform.python_version(), "gymnasium": gymnasium.__version__,
            "mujoco": mujoco.__version__, "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__, "numba": numba.__version__, "machine": platform.machine()}


__all__ = ["LoopHooks", "RunDir", "SynthesisConfig", "Synthesizer", "synthesize"]
