"""The reward-coder loop (Eureka / Text2Reward style): ``rewardsmith synthesize``.

Each round the coder writes K reward programs from the prompt (task context, the last round's
reflection, human feedback). Every response goes through code extraction and the full check
(validate, compile, probe); a rejected one gets its precise error back in a bounded repair round.
Accepted candidates train in parallel (one process per worker, each with its own seed); the
best by true fitness is reflected on for the next round. At the end the best program is
re-trained on fresh seeds, the human (built-in) and sparse baselines are trained at the same
budget and seeds, and the human-normalised score is reported.

Everything lands in the run directory, so a killed run resumes with ``resume=DIR`` without
retraining finished candidates or resending cached requests (see :class:`RunDir`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rewardsmith import __version__
from rewardsmith.coders.base import Coder, CoderContext, CoderError
from rewardsmith.errors import RewardsmithError
from rewardsmith.prompting import render_prompt
from rewardsmith.tasks import TaskSpec, get_task


@dataclass
class SynthesisConfig:
    """Settings of one synthesis run (every CLI flag of ``rewardsmith synthesize``)."""

    task: str
    coder: str = "offline"
    iterations: int = 3
    samples: int = 4
    steps: int | None = None
    seed: int = 0
    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    final_seeds: int = 3
    baselines: bool = True
    repair_rounds: int = 1
    algo: str | None = None
    n_envs: int = 8
    eval_episodes: int | None = None
    feedback: str | None = None
    model: str | None = None
    base_url: str | None = None
    temperature: float = 1.0
    max_tokens: int | None = None
    no_cache: bool = False
    prompts_dir: str | None = None
    replay_dir: str | None = None
    gif_frames: int = 40
    stop_when_solved: bool = True


class RunDir:
    """The run directory: manifest, events, exchanges, candidates, baselines, summary."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def event(self, kind: str, **data: Any) -> None:
        """Append one line to ``events.jsonl``."""
        with open(self.path / "events.jsonl", "a") as fh:
            fh.write(json.dumps({"t": round(time.time(), 3), "event": kind, **data}, default=str) + "\n")

    def write_json(self, rel: str, data: Any) -> Path:
        """Write ``data`` as JSON at ``rel`` (atomically)."""
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, path)
        return path

    def read_json(self, rel: str) -> Any:
        """The JSON at ``rel``, or None."""
        path = self.path / rel
        return json.loads(path.read_text()) if path.is_file() else None


def _train_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one reward (in a worker process); reuses a finished ``result.json``."""
    done = Path(job["out"]) / "result.json"
    if done.is_file():
        return {**json.loads(done.read_text()), "resumed": True}
    from rewardsmith.train import train

    try:
        result = train(job["task"], job["reward"], steps=job["steps"], seed=job["seed"], algo=job["algo"],
                       n_envs=job["n_envs"], device="auto", out=job["out"], eval_episodes=job["eval_episodes"])
    except RewardsmithError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a crash in training must not kill the run
        return {"error": f"{type(exc).__name__}: {exc}"}
    return result.to_dict()


class Synthesizer:
    """Runs the loop. Use :func:`synthesize` unless you need the pieces."""

    def __init__(self, config: SynthesisConfig, run: RunDir, coder: Coder | None = None,
                 log: Callable[[str], None] = print, progress: bool = False,
                 ask_feedback: Callable[[int, list[dict[str, Any]]], str | None] | None = None) -> None:
        self.config = config
        self.task: TaskSpec = get_task(config.task)
        self.run = run
        self.log = log
        self.progress = progress
        self.ask_feedback = ask_feedback
        self.coder = coder or make_loop_coder(config, run)
        self.steps = int(config.steps or self.task.default_steps)
        self.history: list[dict[str, Any]] = []
        self.feedback: list[str] = [config.feedback] if config.feedback else []

    # -- prompts ---------------------------------------------------------------------------
    def _render(self, name: str, **ctx: Any) -> str:
        return render_prompt(name, prompts_dir=self.config.prompts_dir, **ctx)

    def messages(self, last_round: list[dict[str, Any]]) -> list[dict[str, str]]:
        """The chat messages for the next round."""
        user = self._render("task", task=self.task)
        best = self.best()
        if best is not None:
            others = [{"index": c["index"], "fitness_mean": c.get("fitness_mean"), "error": c.get("error"),
                       "components": c.get("components", [])} for c in last_round if c is not best]
            user += "\n\n" + self._render("reflection", task=self.task, best=best, others=others)
        for text in self.feedback:
            user += "\n\n" + self._render("human_feedback", feedback=text)
        return [{"role": "system", "content": self._render("system")}, {"role": "user", "content": user}]

    def best(self) -> dict[str, Any] | None:
        """The best trained candidate so far (by fitness)."""
        trained = [c for c in self.history if c.get("fitness_mean") is not None]
        return max(trained, key=lambda c: c["fitness_mean"]) if trained else None

    def _context(self, round_idx: int, **kw: Any) -> CoderContext:
        hist = [{"source": c["source"], "fitness": c.get("fitness_mean"), "ok": c.get("fitness_mean") is not None,
                 "error": c.get("error"), "reflection": c.get("stats")} for c in self.history if c.get("source")]
        return CoderContext(task=self.task, round=round_idx, seed=self.config.seed, history=hist,
                            human_feedback="\n".join(self.feedback) or None, **kw)

    # -- one candidate ---------------------------------------------------------------------
    def _accept(self, text: str, messages: list[dict[str, str]], round_idx: int, index: int) -> dict[str, Any]:
        """Extract and check a response, repairing it up to ``repair_rounds`` times."""
        from rewardsmith.coders.extract import extract_code
        from rewardsmith.program import check_program

        cand: dict[str, Any] = {"round": round_idx, "index": index, "attempts": []}
        convo = list(messages)
        for attempt in range(self.config.repair_rounds + 1):
            code = extract_code(text)
            if code is None:
                error, stage, line = "the reply contains no Python code block", "extract", None
            else:
                result = check_program(code, self.task)
                if result.ok:
                    cand.update(source=code, components=result.components, error=None)
                    cand["attempts"].append({"ok": True})
                    return cand
                error, stage, line = result.error, result.stage, result.line
            cand["attempts"].append({"ok": False, "error": error, "stage": stage})
            cand.update(source=code, error=error)
            if attempt == self.config.repair_rounds:
                break
            convo = convo + [{"role": "assistant", "content": text},
                             {"role": "user", "content": self._render("error", error=error, stage=stage, line=line)}]
            try:
                text = self.coder.complete(convo, n=1, context=self._context(round_idx, repair_of=code,
                                                                            error=error))[0].text
            except CoderError as exc:
                cand["error"] = f"repair request failed: {exc}"
                break
        return cand

    # -- rounds ----------------------------------------------------------------------------
    def run_round(self, round_idx: int, last_round: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ask, check, train and reflect on one round's candidates."""
        from rewardsmith.reflection import reflect

        rdir = f"rounds/r{round_idx:02d}"
        saved = self.run.read_json(f"{rdir}/candidates.json")
        if saved is None:
            messages = self.messages(last_round)
            self.run.write_json(f"{rdir}/prompt.json", messages)
            completions = self.coder.complete(messages, n=self.config.samples, context=self._context(round_idx))
            self.run.event("responses", round=round_idx, n=len(completions))
            cands = [self._accept(c.text, messages, round_idx, i) for i, c in enumerate(completions)]
            for c in cands:
                cdir = self.run.path / rdir / f"c{c['index']:02d}"
                cdir.mkdir(parents=True, exist_ok=True)
                if c.get("source"):
                    (cdir / "reward.py").write_text(c["source"])
            self.run.write_json(f"{rdir}/candidates.json", cands)
        else:
            cands = saved
            self.log(f"round {round_idx}: resuming {len(cands)} candidates from {rdir}")
        jobs = []
        for c in cands:
            if c.get("error") is None:
                out = str(self.run.path / rdir / f"c{c['index']:02d}")
                seed = self.config.seed + 100 * round_idx + c["index"]
                jobs.append((c, self._job(c["source"], seed, out)))
        for c in cands:
            if c.get("error"):
                self.log(f"  r{round_idx} c{c['index']}: rejected: {c['error']}")
        results = self._execute([j for _, j in jobs], label=f"round {round_idx + 1}: training")
        for (c, _), res in zip(jobs, results):
            if "error" in res:
                c["error"] = f"training failed: {res['error']}"
                continue
            c.update(fitness_mean=res["fitness_mean"], fitness_std=res["fitness_std"],
                     success_rate=res.get("success_rate"), wall_s=res.get("wall_s"))
            c["stats"] = reflect(self.task, res, c.get("components"))
            self.log(f"  r{round_idx} c{c['index']}: fitness {res['fitness_mean']:.4g} ± {res['fitness_std']:.3g}"
                     f" ({', '.join(c.get('components', []))})")
        self.run.write_json(f"{rdir}/results.json", cands)
        self.run.event("round_done", round=round_idx,
                       fitness=[c.get("fitness_mean") for c in cands])
        return cands

    def _solved(self) -> bool:
        """Whether no better program can exist: the fitness counts steps and every evaluation
        episode of the best candidate lasted the env's whole time limit."""
        from rewardsmith.reflection import max_episode_steps

        best = self.best()
        limit = max_episode_steps(self.task)
        return (best is not None and self.task.fitness.reduce == "length" and limit is not None
                and best["fitness_mean"] >= limit and best.get("fitness_std", 1.0) == 0.0)

    def _gifs(self, round_idx: int, cands: list[dict[str, Any]]) -> None:
        """Render a rollout GIF of each trained candidate (for --interactive)."""
        from rewardsmith.train import rollout_gif

        for c in cands:
            if c.get("fitness_mean") is None:
                continue
            cdir = self.run.path / f"rounds/r{round_idx:02d}/c{c['index']:02d}"
            try:
                c["gif"] = str(rollout_gif(cdir, self.task, cdir / "rollout.gif",
                                             frames=self.config.gif_frames))
            except Exception as exc:  # rendering is a convenience: never fail the run for it
                c["gif"] = f"(no GIF: {type(exc).__name__}: {exc})"

    def _job(self, reward: Any, seed: int, out: str) -> dict[str, Any]:
        return {"task": self.task, "reward": reward, "steps": self.steps, "seed": seed, "algo": self.config.algo,
                "n_envs": self.config.n_envs, "out": out, "eval_episodes": self.config.eval_episodes}

    def _execute(self, jobs: list[dict[str, Any]], label: str = "training") -> list[dict[str, Any]]:
        """Run training jobs on ``workers`` processes, with a progress bar when one is wanted."""
        if not jobs:
            return []
        workers = min(self.config.workers, len(jobs))
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        with self._progress(label, len(jobs)) as advance:
            if workers <= 1:
                for i, job in enumerate(jobs):
                    results[i] = _train_job(job)
                    advance(results[i])
            else:
                import multiprocessing

                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                    futures = {pool.submit(_train_job, job): i for i, job in enumerate(jobs)}
                    for fut in as_completed(futures):
                        results[futures[fut]] = fut.result()
                        advance(results[futures[fut]])
        return [r or {"error": "no result"} for r in results]

    @contextlib.contextmanager
    def _progress(self, label: str, total: int) -> Iterator[Callable[[dict[str, Any]], None]]:
        if not self.progress:
            yield lambda _result: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        best: list[float] = []
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[best]}"), transient=True) as bar:
            task_id = bar.add_task(f"{label} ({min(self.config.workers, total)} workers)", total=total, best="")

            def advance(result: dict[str, Any]) -> None:
                if result.get("fitness_mean") is not None:
                    best.append(result["fitness_mean"])
                bar.update(task_id, advance=1, best=f"best fitness {max(best):.4g}" if best else "")

            yield advance

    def round_table(self, round_idx: int, cands: list[dict[str, Any]]) -> Any:
        """A rich table of one round: candidate, status, fitness, components or error."""
        from rich.table import Table

        table = Table(title=f"round {round_idx + 1}: {self.task.name}")
        for col in ("#", "status", "fitness", "components / error"):
            table.add_column(col)
        best = self.best()
        for c in cands:
            trained = c.get("fitness_mean") is not None
            status = "best so far" if c is best else ("trained" if trained else "rejected")
            fit = f"{c['fitness_mean']:.4g} ± {c.get('fitness_std') or 0:.2g}" if trained else "-"
            table.add_row(str(c["index"]), status, fit, ", ".join(c.get("components", [])) if trained
                          else str(c.get("error", ""))[:90])
        return table

    # -- the whole run ---------------------------------------------------------------------
    def run_all(self) -> dict[str, Any]:
        """Every round, the final re-training, the baselines and ``summary.json``."""
        t0 = time.perf_counter()
        last: list[dict[str, Any]] = []
        for r in range(self.config.iterations):
            self.log(f"round {r + 1}/{self.config.iterations}: asking the {self.coder.name} coder for "
                     f"{self.config.samples} programs")
            last = self.run_round(r, last)
            self.history.extend(last)
            if self.progress:
                from rich.console import Console

                Console(stderr=True).print(self.round_table(r, last))
            if self.config.stop_when_solved and r + 1 < self.config.iterations and self._solved():
                self.log(f"round {r + 1}: the best program reaches the maximum possible fitness; stopping early")
                self.run.event("early_stop", round=r)
                break
            if self.ask_feedback is not None:
                self._gifs(r, last)
                text = self.ask_feedback(r, last)
                if text:
                    self.feedback.append(text)
                    self.run.event("human_feedback", round=r, text=text)
        best = self.best()
        if best is None:
            raise RewardsmithError("no candidate could be trained: every program was rejected (see "
                                   f"{self.run.path}/rounds/*/candidates.json)")
        (self.run.path / "best_reward.py").write_text(_standalone(best["source"], self.task))
        summary = self._final(best)
        summary["wall_s"] = round(time.perf_counter() - t0, 1)
        self.run.write_json("summary.json", summary)
        try:
            from rewardsmith.report import plot_run

            summary["report"] = str(plot_run(self.run.path))
            self.run.write_json("summary.json", summary)
        except Exception as exc:  # a figure is a convenience: never fail a finished run for it
            self.log(f"(no report.png: {type(exc).__name__}: {exc})")
        self.run.event("done", best=summary["best"]["fitness_mean"])
        return summary

    def _final(self, best: dict[str, Any]) -> dict[str, Any]:
        from rewardsmith.stats import human_normalized, summarize

        seeds = [self.config.seed + 1000 + k for k in range(self.config.final_seeds)]
        plans = {"best": best["source"]}
        human = "builtin" if self.task.has_builtin_reward else self.task.human_reward
        if self.config.baselines:
            if human is not None:
                plans["human"] = human
            if self.task.sparse_reward:
                plans["sparse"] = "sparse"
        jobs, keys = [], []
        for name, reward in plans.items():
            for s in seeds:
                folder = "final" if name == "best" else f"baselines/{name}"
                jobs.append(self._job(reward, s, str(self.run.path / folder / f"seed{s}")))
                keys.append(name)
        self.log(f"final: re-training the best program and the baselines on seeds {seeds}")
        results = self._execute(jobs, label="final re-training and baselines")
        by: dict[str, list[float]] = {}
        for name, res in zip(keys, results):
            if "error" not in res:
                by.setdefault(name, []).append(res["fitness_mean"])
        stats = {name: summarize(vals) for name, vals in by.items()}
        hns, hns_note = None, None
        if {"best", "human", "sparse"} <= set(stats):
            hns = human_normalized(stats["best"].iqm, stats["human"].iqm, stats["sparse"].iqm)
            gap = abs(stats["human"].iqm - stats["sparse"].iqm)
            if hns is None:
                hns_note = "undefined: the human and sparse baselines score the same"
            elif gap < max(stats["human"].std, stats["sparse"].std):
                hns_note = (f"unreliable: the human-sparse gap ({gap:.3g}) is smaller than the baselines' spread "
                            "across seeds; compare the raw fitness instead")
        usage = self.coder.usage.to_dict()
        return {
            "task": self.task.name, "coder": self.coder.name, "steps_per_candidate": self.steps,
            "seeds": seeds,
            "best": {"fitness_mean": stats["best"].mean if "best" in stats else None,
                     "fitness_std": stats["best"].std if "best" in stats else None,
                     "fitness_iqm": stats["best"].iqm if "best" in stats else None,
                     "ci95": [stats["best"].ci_low, stats["best"].ci_high] if "best" in stats else None,
                     "search_fitness": best["fitness_mean"], "round": best["round"], "index": best["index"],
                     "source": str(self.run.path / "best_reward.py"), "components": best.get("components")},
            "baselines": {name: (stats[name].to_dict() if name in stats else None) for name in ("human", "sparse")},
            "hns": hns,
            "hns_basis": "IQM over seeds of each method",
            "hns_note": hns_note,
            "tokens": {"prompt": usage["prompt_tokens"], "completion": usage["completion_tokens"]},
            "requests": usage["requests"], "cache_hits": usage.get("cache_hits", 0),
            "candidates": [{"round": c["round"], "index": c["index"], "fitness_mean": c.get("fitness_mean"),
                            "error": c.get("error")} for c in self.history],
        }


def _standalone(source: str, task: TaskSpec) -> str:
    header = (f'"""Best reward found by rewardsmith for task {task.name!r}.\n\n'
              f"Signature: {task.signature}\n"
              '"""\n\nimport math\n\nimport numpy as np\n\n')
    body = "\n".join(line for line in source.splitlines()
                     if line.strip() not in ("import numpy as np", "import math"))
    return header + body.strip() + "\n"


def make_loop_coder(config: SynthesisConfig, run: RunDir) -> Coder:
    """The coder the config asks for, recording exchanges into the run directory."""
    from rewardsmith.coders import make_coder

    extra = {"seed": config.seed} if config.coder == "offline" else {}
    return make_coder(config.coder, model=config.model, base_url=config.base_url, temperature=config.temperature,
                      max_tokens=config.max_tokens, no_cache=config.no_cache, replay_dir=config.replay_dir,
                      record_dir=str(run.path), **extra)


def synthesize(config: SynthesisConfig | None = None, out: str | Path | None = None, resume: str | Path | None = None,
               coder: Coder | None = None, log: Callable[[str], None] = print, progress: bool = False,
               ask_feedback: Callable[[int, list[dict[str, Any]]], str | None] | None = None) -> dict[str, Any]:
    """Run the loop; returns the summary (also in ``<out>/summary.json``).

    Args:
        config: the settings (ignored when resuming: the run's manifest is used).
        out: the run directory (default ``runs/<task>-<timestamp>``).
        resume: an earlier run directory to continue.
        coder: a coder object overriding ``config.coder``.
        log: where progress lines go.
        progress: show rich progress bars and a table per round (on stderr).
        ask_feedback: called after each round with the round's candidates; returns human feedback.
    """
    if resume is not None:
        run = RunDir(resume)
        manifest = run.read_json("manifest.json")
        if manifest is None:
            raise RewardsmithError(f"{resume} is not a rewardsmith run directory (no manifest.json)")
        config = SynthesisConfig(**manifest["config"])
        run.event("resume")
    else:
        if config is None:
            raise RewardsmithError("synthesize needs a config or resume=DIR")
        get_task(config.task)
        run = RunDir(out or Path("runs") / f"{config.task}-{datetime.now():%Y%m%d-%H%M%S}")
        if (run.path / "manifest.json").exists():
            raise RewardsmithError(f"{run.path} already holds a run; use --resume {run.path} or another --out")
        run.write_json("manifest.json", {"config": asdict(config), "versions": _versions(),
                                         "created": datetime.now().isoformat(timespec="seconds")})
        run.event("start", task=config.task, coder=config.coder)
    try:
        loop = Synthesizer(config, run, coder=coder, log=log, progress=progress, ask_feedback=ask_feedback)
        return loop.run_all()
    except RewardsmithError as exc:
        run.event("error", message=str(exc))
        raise RewardsmithError(f"{exc} (nothing is lost: continue with --resume {run.path})") from exc


def _versions() -> dict[str, str]:
    import gymnasium
    import mujoco
    import numba
    import stable_baselines3
    import torch

    return {"rewardsmith": __version__, "python": platform.python_version(), "gymnasium": gymnasium.__version__,
            "mujoco": mujoco.__version__, "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__, "numba": numba.__version__, "machine": platform.machine()}
