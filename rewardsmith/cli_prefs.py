"""``rewardsmith prefs``: preference-based RL from a scripted, human or LLM teacher.

Registered on the main app by :func:`register` (called from :mod:`rewardsmith.cli`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

_HELP = ("Train an agent on a reward model learned from preferences between trajectory segments "
         "(PbRL: PPO with the learned reward live, SAC with its replay buffer relabelled after each update).")


def prefs(
    task: Annotated[str | None, typer.Option("--task", "-t", help="Task (see `rewardsmith tasks`).")] = None,
    teacher: Annotated[str, typer.Option(help="scripted (from the task's true reward), human (GIFs in the "
                                              "terminal) or llm (through the OpenAI-compatible coder).")] = "scripted",
    teacher_kind: Annotated[str, typer.Option("--teacher-kind", help="Scripted teacher: oracle, boltzmann, mistake, "
                                                                     "skip, equal or myopic (B-Pref).")] = "oracle",
    queries: Annotated[int, typer.Option(help="Pairs asked in all.")] = 200,
    steps: Annotated[int | None, typer.Option(help="Agent training steps (default: the task's budget).")] = None,
    algo: Annotated[str | None, typer.Option(help="ppo or sac (default: the task's).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the agent, the rollouts and the query draws.")] = 0,
    updates: Annotated[int, typer.Option(help="Reward updates during training.")] = 10,
    selection: Annotated[str, typer.Option(help="Query selection: uniform, disagreement or entropy.")
                         ] = "disagreement",
    oversample: Annotated[int, typer.Option(help="Candidate pairs scored per query asked.")] = 10,
    segment: Annotated[int, typer.Option(help="Steps per segment.")] = 50,
    first: Annotated[float, typer.Option(help="Share of the queries asked on random-policy segments before "
                                              "the agent trains.")] = 0.3,
    schedule: Annotated[str, typer.Option(help="constant or hyperbolic (more early) split of the other queries "
                                               "over the updates.")] = "hyperbolic",
    episodes: Annotated[int, typer.Option(help="Rollouts collected per update to cut segments from.")] = 8,
    ensemble: Annotated[int, typer.Option(help="Reward-model ensemble members.")] = 3,
    device: Annotated[str, typer.Option(help="Torch device of the agent and the reward model.")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/prefs-TASK-TIME).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    from rewardsmith.cli import _guard
    from rewardsmith.preference.pbrl import PrefsConfig
    from rewardsmith.preference.pbrl import prefs as run_prefs

    config = None
    if resume is None:
        config = PrefsConfig(task=task or "", teacher=teacher, teacher_kind=teacher_kind, queries=queries,
                             steps=steps, algo=algo, seed=seed, updates=updates, selection=selection,
                             oversample=oversample, segment=segment, first=first, schedule=schedule, episodes=episodes,
                             ensemble=ensemble, device=device)
        _guard(config.validate)
        if out is None:
            import time

            out = Path("runs") / f"prefs-{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    where = resume or out

    def log(line: str) -> None:
        typer.echo(line, err=as_json)

    try:
        summary: dict[str, Any] = _guard(run_prefs, config, out=out, resume=resume, log=log)
    except typer.Exit as exc:
        if exc.exit_code:
            typer.echo(f"the run directory keeps every answer so far: continue with "
                       f"`rewardsmith prefs --resume {where}`", err=True)
        raise
    if as_json:
        typer.echo(json.dumps({k: v for k, v in summary.items() if k != "progress"}, indent=2))
        return
    typer.echo(f"run: {where}")
    typer.echo(f"final true fitness {summary['final_fitness_mean']:.4g} ± {summary['final_fitness_std']:.3g} "
               f"after {summary['steps']} steps and {summary['queries']} answered queries "
               f"({summary['teacher']} teacher, {summary['selection']} selection)")


def register(app: typer.Typer) -> None:
    """Add ``prefs`` to ``app``."""
    app.command("prefs", help=_HELP)(prefs)


__all__ = ["prefs", "register"]
