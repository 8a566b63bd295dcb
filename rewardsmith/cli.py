"""The ``rewardsmith`` command line: a thin shell over the library.

Errors print as one line on stderr with exit status 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rewardsmith import __version__
from rewardsmith.settings import default_for, help_for

app = typer.Typer(help="Design reward functions for classic RL: check, train with and synthesize reward programs.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
tasks_app = typer.Typer(help="List tasks, or show one with `tasks show TASK`.", invoke_without_command=True)
app.add_typer(tasks_app, name="tasks")

_STATE = {"debug": False}


def _fail(exc: BaseException) -> None:
    if _STATE["debug"]:
        raise exc
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from rewardsmith.errors import RewardsmithError

    try:
        return fn(*args, **kwargs)
    except RewardsmithError as exc:
        _fail(exc)
    except KeyboardInterrupt as exc:
        typer.echo(f"error: interrupted{f' ({exc})' if str(exc) else ''}", err=True)
        raise typer.Exit(130) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rewardsmith {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.",
                                        envvar="REWARDSMITH_DEBUG")] = False,
) -> None:
    """rewardsmith: reward design for classic RL."""
    _STATE["debug"] = debug


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@tasks_app.callback()
def tasks_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered tasks."""
    if ctx.invoked_subcommand is not None:
        return
    from rewardsmith.tasks import list_tasks

    specs = list_tasks()
    if as_json:
        _echo_json([{"name": t.name, "version": t.version, "env_id": t.env_id, "description": t.description,
                     "has_builtin_reward": t.has_builtin_reward, "default_steps": t.default_steps} for t in specs])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rewardsmith tasks")
    for col in ("task@version", "env", "variables", "fitness", "built-in reward", "default steps"):
        table.add_column(col)
    for t in specs:
        table.add_row(t.ref, t.env_id, str(len(t.variables)), t.fitness.description,
                      "yes" if t.has_builtin_reward else "no", f"{t.default_steps:,}")
    Console().print(table)


@tasks_app.command("show")
def tasks_show(
    task: Annotated[str, typer.Argument(help="Task name (see `rewardsmith tasks`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one task: its variables, reward signature, fitness and baselines."""
    from rewardsmith.tasks import get_task, variables_table

    spec = _guard(get_task, task)
    if as_json:
        _echo_json(spec.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{spec.ref}[/bold]  ({spec.env_id})\n{spec.description}\n")
    table = Table(title="reward-state variables")
    for col in ("name", "shape", "unit", "meaning"):
        table.add_column(col)
    for row in variables_table(spec):
        table.add_row(*row)
    console.print(table)
    console.print(f"\n[bold]signature[/bold]\n  {spec.signature}")
    threshold = "" if spec.fitness.threshold is None else f" (success when >= {spec.fitness.threshold:g})"
    console.print(f"[bold]fitness[/bold]   {spec.fitness.description} [{spec.fitness.unit}]{threshold}")
    console.print(f"[bold]built-in reward[/bold] {spec.builtin_reward_description if spec.has_builtin_reward else 'none'}")
    console.print(f"[bold]default budget[/bold]  {spec.default_steps:,} steps of {spec.default_algo.upper()}")


@tasks_app.command("describe")
def tasks_describe(
    env_id: Annotated[str, typer.Argument(help="A MuJoCo env id gymnasium.make knows (e.g. Hopper-v5).")],
    out: Annotated[Path | None, typer.Option(help="Write the task file here (default: print it).")] = None,
    name: Annotated[str | None, typer.Option(help="The task's name (default: from the env id).")] = None,
) -> None:
    """Describe a MuJoCo env as a task: its named bodies, joints, sites, sensors and actuators become
    variables; edit the file's description and fitness, then use it as `--task FILE.py`."""
    from rewardsmith.describe import describe_env, task_file

    spec = _guard(describe_env, env_id, name=name)
    text = task_file(spec)
    if out is None:
        typer.echo(text)
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(f"{out}: task {spec.name!r} with {len(spec.variables)} variables ({spec.state_size} values); "
               f"edit its description and fitness, then e.g. `rewardsmith train --task {out} --builtin`")


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="The reward program (.py).")],
    task: Annotated[str, typer.Option("--task", "-t", help="Task the program is for.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    no_probe: Annotated[bool, typer.Option("--no-probe", help="Skip the sandboxed probe.")] = False,
    timeout: Annotated[float, typer.Option(help="Probe wall timeout, seconds.")] = 30.0,
) -> None:
    """Validate, compile and probe a reward program (or a potential program, defining
    compute_potential). Exit 0 if accepted, 1 if rejected."""
    from rewardsmith.shaping.programs import check_any
    from rewardsmith.tasks import get_task

    spec = _guard(get_task, task)
    if not file.is_file():
        _fail(FileNotFoundError(f"no such file: {file}"))
    result = _guard(check_any, file, spec, run_probe=not no_probe, timeout_s=timeout)
    if as_json:
        _echo_json(result.to_dict())
    elif result.ok:
        probe = result.probe
        extra = f", {probe.per_call_us:.1f} us/call in the probe" if probe and probe.per_call_us else ""
        typer.echo(f"ok: {file} for {spec.name}; components: {', '.join(result.components) or '(none)'}{extra}")
        for note in result.notes:
            typer.echo(f"  note: {note}")
    else:
        typer.echo(f"rejected: {file}: {result.error}", err=True)
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def train(
    task: Annotated[str, typer.Option("--task", "-t", help="Task to train on (name or name@version).")],
    reward: Annotated[Path | None, typer.Option("--reward", "-r", help="Reward program file (or a potential "
                                                "program: the sparse reward plus its shaping is trained).")] = None,
    builtin: Annotated[bool, typer.Option("--builtin", help="Use the env's own (human-designed) reward.")] = False,
    sparse: Annotated[bool, typer.Option("--sparse", help="Use the task's sparse baseline reward.")] = False,
    steps: Annotated[int | None, typer.Option(help="Environment steps (default: the task's budget).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    algo: Annotated[str | None, typer.Option(help="ppo or sac (default: the task's).")] = None,
    n_envs: Annotated[int, typer.Option("--n-envs", help="Parallel environments.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    time_limit: Annotated[float | None, typer.Option("--time-limit", help=help_for("time_limit"))] = None,
    intrinsic: Annotated[str | None, typer.Option(help="Exploration bonus added to the reward "
                                                       "(rewardsmith.intrinsic: rnd, icm, simhash, ...).")] = None,
    intrinsic_coef: Annotated[float | None, typer.Option("--intrinsic-coef",
                                                         help=help_for("intrinsic_coef"))] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train an SB3 agent with a reward and report the task's true fitness.

    Training runs in a worker process watched against its time limit, so a reward that never
    returns on the states training reaches stops with one line instead of hanging.
    """
    from rewardsmith.errors import TrainingError
    from rewardsmith.executor import LocalExecutor, TrainJob
    from rewardsmith.tasks import get_task
    from rewardsmith.train import default_out_dir, resolve_device

    chosen = [x for x in (reward is not None, builtin, sparse) if x]
    if len(chosen) != 1:
        _fail(TrainingError("give exactly one of --reward FILE, --builtin or --sparse"))
    if reward is not None and not reward.is_file():
        _fail(FileNotFoundError(f"no such file: {reward}"))
    if steps is not None and steps < 1:
        _fail(TrainingError(f"--steps must be positive, got {steps}"))
    if time_limit is not None and time_limit <= 0:
        _fail(TrainingError(f"--time-limit must be positive seconds, got {time_limit:g}"))
    spec = _guard(get_task, task)
    _guard(resolve_device, device)
    if intrinsic is not None:
        from rewardsmith.intrinsic import bonus_names

        if intrinsic.lower() not in bonus_names():  # an unknown name fails here, not in the worker
            _fail(TrainingError(f"unknown intrinsic bonus {intrinsic!r}: use {', '.join(bonus_names())}"))
    choice: Any = reward.read_text() if reward is not None else ("builtin" if builtin else "sparse")
    if builtin and not spec.has_builtin_reward:
        _fail(TrainingError(f"task {spec.name!r} has no built-in reward; pass a reward program or use --sparse"))
    if reward is not None:  # reject a bad program here, before a worker starts
        from rewardsmith.shaping.programs import check_any

        checked = _guard(check_any, reward, spec)
        if checked.exception is not None:
            _fail(checked.exception)
    folder = out or default_out_dir(spec)
    job = TrainJob(name=f"train {spec.ref}", task=spec, reward=choice, steps=int(steps or spec.default_steps),
                   seed=seed, out=str(folder), algo=algo, n_envs=n_envs, time_limit_s=time_limit,
                   progress=not as_json and sys.stderr.isatty(), reuse=False, device=device,
                   checked=reward is not None,  # load_program above ran the full check
                   intrinsic=intrinsic, intrinsic_coef=intrinsic_coef)
    with LocalExecutor(workers=1) as executor:
        outcome = _guard(executor.run, [job])[0]
    if outcome.result is None:
        _fail(TrainingError(outcome.error or outcome.status))
    result = outcome.result
    if as_json:
        result.pop("curve", None)
        _echo_json(result)
        return
    success = "" if result["success_rate"] is None else f", success rate {result['success_rate']:.0%}"
    typer.echo(f"{result['task']} [{result['reward']}] {result['algo'].upper()} seed {result['seed']}: "
               f"fitness {result['fitness_mean']:.3f} ± {result['fitness_std']:.3f} over {len(result['episodes'])} "
               f"episodes{success}; {result['steps']:,} steps in {result['wall_s']:.0f} s")
    if result.get("nonfinite"):
        typer.echo(f"warning: {result['nonfinite']} non-finite or failing reward values were replaced by 0", err=True)
    typer.echo(f"saved to {result['out_dir']}")


def _setting(name: str, *flags: str) -> Any:
    """A typer option whose default and help come from SynthesisConfig."""
    return typer.Option(*flags, help=help_for(name))


@app.command()
def synthesize(
    task: Annotated[str | None, _setting("task", "--task", "-t")] = None,
    coder: Annotated[str, _setting("coder")] = default_for("coder"),
    iterations: Annotated[int, _setting("iterations")] = default_for("iterations"),
    samples: Annotated[int, _setting("samples")] = default_for("samples"),
    steps: Annotated[int | None, _setting("steps")] = default_for("steps"),
    seed: Annotated[int, _setting("seed")] = default_for("seed"),
    workers: Annotated[int | None, _setting("workers")] = default_for("workers"),
    executor: Annotated[str, _setting("executor")] = default_for("executor"),
    address: Annotated[str | None, _setting("address")] = default_for("address"),
    cpus_per_job: Annotated[float, _setting("cpus_per_job", "--cpus-per-job")] = default_for("cpus_per_job"),
    gpus_per_job: Annotated[float, _setting("gpus_per_job", "--gpus-per-job")] = default_for("gpus_per_job"),
    device: Annotated[str, _setting("device")] = default_for("device"),
    schedule: Annotated[str, _setting("schedule")] = default_for("schedule"),
    halving_eta: Annotated[int, _setting("halving_eta", "--halving-eta")] = default_for("halving_eta"),
    halving_min_fraction: Annotated[float, _setting("halving_min_fraction", "--halving-min-fraction")
                                    ] = default_for("halving_min_fraction"),
    final_candidates: Annotated[int | None, _setting("final_candidates", "--final-candidates")
                                ] = default_for("final_candidates"),
    warm_start: Annotated[bool, _setting("warm_start", "--warm-start/--cold-start")] = default_for("warm_start"),
    screen: Annotated[str, _setting("screen")] = default_for("screen"),
    intrinsic: Annotated[str | None, _setting("intrinsic")] = default_for("intrinsic"),
    intrinsic_coef: Annotated[float | None, _setting("intrinsic_coef", "--intrinsic-coef")
                              ] = default_for("intrinsic_coef"),
    shaping: Annotated[str, _setting("shaping")] = default_for("shaping"),
    select: Annotated[str, _setting("select")] = default_for("select"),
    teacher: Annotated[str, _setting("teacher")] = default_for("teacher"),
    time_limit: Annotated[float | None, _setting("time_limit", "--time-limit")] = default_for("time_limit"),
    final_seeds: Annotated[int, _setting("final_seeds", "--final-seeds")] = default_for("final_seeds"),
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Skip the human and sparse baselines.")] = False,
    no_early_stop: Annotated[bool, typer.Option("--no-early-stop",
                                                help="Run every round even when the task is solved.")] = False,
    n_envs: Annotated[int, _setting("n_envs", "--n-envs")] = default_for("n_envs"),
    algo: Annotated[str | None, _setting("algo")] = default_for("algo"),
    eval_episodes: Annotated[int | None, _setting("eval_episodes", "--eval-episodes")] = default_for("eval_episodes"),
    repair_rounds: Annotated[int, _setting("repair_rounds", "--repair-rounds")] = default_for("repair_rounds"),
    feedback: Annotated[str | None, _setting("feedback")] = default_for("feedback"),
    interactive: Annotated[bool, typer.Option(help="Pause after each round for typed feedback.")] = False,
    gif_frames: Annotated[int, _setting("gif_frames", "--gif-frames")] = default_for("gif_frames"),
    model: Annotated[str | None, typer.Option(help=help_for("model"), envvar="REWARDSMITH_MODEL")] = None,
    base_url: Annotated[str | None, _setting("base_url", "--base-url")] = default_for("base_url"),
    temperature: Annotated[float, _setting("temperature")] = default_for("temperature"),
    max_tokens: Annotated[int | None, _setting("max_tokens", "--max-tokens")] = default_for("max_tokens"),
    no_cache: Annotated[bool, _setting("no_cache", "--no-cache")] = default_for("no_cache"),
    prompts: Annotated[Path | None, typer.Option(help=help_for("prompts_dir"))] = None,
    replay: Annotated[Path | None, typer.Option(help=help_for("replay_dir"))] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<task>-<timestamp>).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Resume the run in this directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Design a reward for a task: coder writes programs, agents train, reflection improves them."""
    from rewardsmith.errors import RewardsmithError
    from rewardsmith.loop import synthesize as run_synthesize
    from rewardsmith.settings import SynthesisConfig

    if resume is None and task is None:
        _fail(RewardsmithError("give --task TASK (or --resume DIR)"))
    config = None
    if resume is None:
        config = _guard(SynthesisConfig(
            task=task or "", coder=coder, iterations=iterations, samples=samples, steps=steps, seed=seed,
            workers=workers, executor=executor, address=address, cpus_per_job=cpus_per_job,
            gpus_per_job=gpus_per_job, device=device, schedule=schedule, halving_eta=halving_eta,
            halving_min_fraction=halving_min_fraction, final_candidates=final_candidates, warm_start=warm_start,
            screen=screen, intrinsic=intrinsic, intrinsic_coef=intrinsic_coef, shaping=shaping, select=select,
            teacher=teacher, time_limit=time_limit,
            final_seeds=final_seeds,
            baselines=not no_baselines, repair_rounds=repair_rounds, gif_frames=gif_frames,
            stop_when_solved=not no_early_stop, n_envs=n_envs, algo=algo, eval_episodes=eval_episodes,
            feedback=feedback, model=model, base_url=base_url, temperature=temperature, max_tokens=max_tokens,
            no_cache=no_cache, prompts_dir=str(prompts) if prompts else None,
            replay_dir=str(replay) if replay else None).validated)
        if coder == "auto" and not as_json:
            typer.echo(f"coder: {config.coder}" + (" (no OPENAI_BASE_URL / OPENAI_API_KEY set: using the built-in "
                                                  "offline coder)" if config.coder == "offline" else ""), err=True)

    def log(line: str) -> None:
        typer.echo(line, err=as_json)

    ask = _ask_feedback if interactive else None
    summary = _guard(run_synthesize, config, out=out, resume=resume, log=log, ask_feedback=ask,
                     progress=not as_json and sys.stderr.isatty())
    if as_json:
        _echo_json({k: v for k, v in summary.items() if k != "candidates"})
        return
    for line in summary_lines(summary):
        typer.echo(line)


def _num(value: Any, fmt: str = ".4g") -> str:
    return "n/a" if value is None else format(value, fmt)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The end-of-run lines of ``synthesize`` (never fails on a missing figure)."""
    best = summary.get("best") or {}
    lines = []
    if best.get("fitness_mean") is None:
        lines.append(f"best reward: {best.get('source', '(none)')}  search fitness {_num(best.get('search_fitness'))}; every "
                     "final re-training failed, so there is no re-trained fitness")
        for name, errors in (summary.get("final_failures") or {}).items():
            lines.extend(f"  {name}: {e}" for e in errors[:3])
    else:
        ci = best.get("ci95") or [None, None]
        lines.append(f"best reward: {best.get('source')}  fitness {_num(best['fitness_mean'])} ± "
                     f"{_num(best.get('fitness_std'), '.3g')} (IQM {_num(best.get('fitness_iqm'))}, 95% CI "
                     f"[{_num(ci[0])}, {_num(ci[1])}]); search fitness {_num(best.get('search_fitness'))}")
    for name in ("human", "sparse"):
        base = (summary.get("baselines") or {}).get(name)
        if base:
            lines.append(f"{name:>6s} baseline: {_num(base.get('mean'))} ± {_num(base.get('std'), '.3g')} "
                         f"(IQM {_num(base.get('iqm'))})")
    if summary.get("hns") is not None:
        lines.append(f"human-normalised score: {summary['hns']:.3f}")
    if summary.get("hns_note"):
        lines.append(f"note: the human-normalised score is {summary['hns_note']}")
    if summary.get("report"):
        lines.append(f"figure: {summary['report']}")
    tokens = summary.get("tokens") or {}
    lines.append(f"tokens: {tokens.get('prompt', 0)} prompt + {tokens.get('completion', 0)} completion "
                 f"in {summary.get('requests', 0)} requests; {summary.get('wall_s') or 0:.0f} s")
    return lines


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A synthesize run directory.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the PNG (default RUN_DIR/report.png).")] = None,
) -> None:
    """Draw the one-page figure of a synthesize run (search, best candidate, final comparison)."""
    from rewardsmith.report import plot_run

    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    path = _guard(plot_run, run_dir, out)
    typer.echo(str(path))


def _ask_feedback(round_idx: int, candidates: list[Any]) -> str | None:
    from rich.console import Console

    from rewardsmith.ui import round_table

    Console(stderr=True).print(round_table(round_idx, candidates, None))
    for c in candidates:
        if c.gif:
            typer.echo(f"candidate {c.index} rollout: {c.gif}", err=True)
    text = typer.prompt("feedback for the next round (empty to continue)", default="", show_default=False,
                        err=True)
    return text.strip() or None


def _register_commands() -> None:
    from rewardsmith.cli_prefs import register

    register(app)


_register_commands()


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (classic-control GIFs) renders offscreen too
    try:
        app()
    except Exception as exc:  # an unexpected error: still one line unless --debug
        if _STATE["debug"]:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
