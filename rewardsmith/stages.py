"""The loop's stages over :class:`~rewardsmith.candidate.Candidate`: propose, accept, evaluate, select.

Each is a plain function of its inputs, testable alone; :class:`rewardsmith.loop.Synthesizer`
composes them (with reflect and finalize) into rounds. A new selection rule (e.g. by
preferences) is a function with :func:`select_by_fitness`'s signature; a new executor implements
:class:`rewardsmith.executor.Executor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rewardsmith.candidate import Candidate, candidate_seed
from rewardsmith.coders.base import Coder, CoderContext, CoderError, Completion
from rewardsmith.executor import Executor, JobOutcome, TrainJob
from rewardsmith.fsutil import atomic_write_json, read_json
from rewardsmith.tasks import TaskSpec

Render = Callable[..., str]


# -- propose ----------------------------------------------------------------------------------
def build_messages(task: TaskSpec, render: Render, best: Candidate | None, last_round: Sequence[Candidate],
                   feedback: Sequence[str], shaping: str = "none",
                   preference: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """The chat messages of a round: the task, the reflection on the best so far (with each
    candidate's pre-screen verdict), human feedback. ``shaping="potential"`` asks for a shaping
    potential (``system_potential.j2``, and the task template's potential section) instead of a reward.

    ``preference`` (preference selection, :mod:`rewardsmith.icpl`): the context of ``icpl.j2`` (the
    teacher's ranking, the preferred and rejected programs and their reward traces), rendered instead
    of the fitness reflection, so that the coder never sees the true fitness."""
    potential = shaping == "potential"
    user = render("task", task=task, potential=potential)
    if preference is not None:
        user += "\n\n" + render("icpl", task=task, **preference)
    elif best is not None:
        others = [{"index": c.index, "name": c.name, "fitness_mean": c.fitness_mean, "error": c.error,
                   "stage": c.stage, "components": c.components, "screen": c.screen, "budget": c.budget}
                  for c in last_round if c is not best]
        user += "\n\n" + render("reflection", task=task, best=best.to_dict(), others=others)
    for text in feedback:
        user += "\n\n" + render("human_feedback", feedback=text)
    return [{"role": "system", "content": render("system_potential" if potential else "system")},
            {"role": "user", "content": user}]


def propose(coder: Coder, messages: list[dict[str, str]], n: int, context: CoderContext) -> list[Completion]:
    """Ask the coder for ``n`` programs (raises CoderError when it cannot answer at all)."""
    return coder.complete(messages, n=n, context=context)


# -- accept -----------------------------------------------------------------------------------
def _sample_error(completion: Completion) -> str | None:
    """Why a completion is a failed sample (a refusal, a reply cut at the length limit), or None."""
    error = getattr(completion, "error", None)
    if error:
        return str(error)
    if getattr(completion, "finish_reason", None) == "length":
        return "the reply was cut off at the length limit before the code was complete"
    return None


def accept(completion: Completion | str, messages: list[dict[str, str]], round_idx: int, index: int, *,
           task: TaskSpec, coder: Coder, render: Render, repair_rounds: int,
           context: Callable[..., CoderContext], check: Callable[..., Any] | None = None) -> Candidate:
    """Extract and check a response, repairing it up to ``repair_rounds`` times.

    ``check`` (default :func:`~rewardsmith.program.check_program`) checks the extracted code, e.g.
    :func:`~rewardsmith.shaping.programs.check_potential` for potential programs.

    A failed sample (refusal, cut-off reply), a reply without code and a program the check
    rejects all get their precise error back in a repair request; the candidate is ``accepted``
    or ``rejected`` with the last error.
    """
    from rewardsmith.coders.extract import extract_code
    from rewardsmith.program import check_program

    check = check or check_program
    cand = Candidate(round=round_idx, index=index)
    convo = list(messages)
    reply = completion if isinstance(completion, Completion) else Completion(text=completion)
    for attempt in range(repair_rounds + 1):
        text = reply.text or ""
        line = None
        code = None
        error = _sample_error(reply)
        stage = "sample"
        if error is None:
            code = extract_code(text)
            if code is None:
                error, stage = "the reply contains no Python code block", "extract"
            else:
                result = check(code, task)
                if result.ok:
                    cand.source, cand.components, cand.notes = code, result.components, list(result.notes)
                    cand.status, cand.error, cand.stage = "accepted", None, None
                    cand.attempts.append({"ok": True})
                    return cand
                error, stage, line = result.error, result.stage, result.line
        cand.attempts.append({"ok": False, "error": error, "stage": stage})
        cand.source, cand.error, cand.stage, cand.status = code, error, stage, "rejected"
        if attempt == repair_rounds:
            break
        convo = convo + [{"role": "assistant", "content": text},
                         {"role": "user", "content": render("error", error=error, stage=stage, line=line)}]
        try:
            reply = coder.complete(convo, n=1, context=context(round_idx, repair_of=code, error=error))[0]
        except CoderError as exc:
            cand.error = f"repair request failed: {exc}"
            break
    return cand


# -- evaluate ---------------------------------------------------------------------------------
def evaluate(executor: Executor, cands: Sequence[Candidate], make_job: Callable[..., TrainJob],
             rounds_dir: Path, base_seed: int, task: TaskSpec,
             on_done: Callable[[JobOutcome], None] | None = None) -> dict[str, dict[str, Any]]:
    """Train every accepted candidate through ``executor``; returns ``{candidate name: TrainResult dict}``.

    Trained candidates get their fitness and reflection; failed ones ``failed`` or ``timeout``
    with the reason. A timeout is recorded in the candidate's folder (``failure.json``), so a
    resumed run does not spend the time limit again; other failures (a worker that died, an env
    that could not be made) may come from the machine rather than the program and are retried on
    resume. A training whose ``result.json`` is intact is reused, one cut short is redone.
    """
    from rewardsmith.reflection import reflect

    jobs: list[tuple[Candidate, TrainJob]] = []
    for c in cands:
        if c.status not in ("accepted", "trained", "failed", "timeout") or c.source is None:
            continue
        out = rounds_dir / f"c{c.index:02d}"
        failure = read_json(out / "failure.json")
        if isinstance(failure, dict) and failure.get("status") == "timeout":
            c.status, c.error, c.stage = failure["status"], failure.get("error"), failure.get("stage")
            continue
        c.seed = candidate_seed(base_seed, c.round, c.index)
        # accept() ran the full check on this very source: the worker need not probe it again
        jobs.append((c, make_job(c.source, c.seed, str(out), c.name, checked=True)))
    outcomes = executor.run([j for _, j in jobs], on_done=on_done)
    results: dict[str, dict[str, Any]] = {}
    for (c, job), outcome in zip(jobs, outcomes):
        if outcome.result is None:
            c.status = "timeout" if outcome.status == "timeout" else "failed"
            c.stage = "timeout" if outcome.status == "timeout" else "training"
            c.error = f"training {'ran out of time' if outcome.status == 'timeout' else 'failed'}: {outcome.error}"
            if outcome.status == "timeout":
                atomic_write_json(Path(job.out) / "failure.json", {"status": c.status, "stage": c.stage,
                                                                  "error": c.error, "wall_s": outcome.wall_s,
                                                                  "steps_done": outcome.steps_done})
            continue
        res = outcome.result
        c.status, c.error, c.stage = "trained", None, None
        c.fitness_mean, c.fitness_std = res["fitness_mean"], res["fitness_std"]
        c.success_rate, c.wall_s = res.get("success_rate"), res.get("wall_s")
        c.budget = int(res.get("steps") or job.steps)
        c.stats = reflect(task, res, c.components)
        results[c.name] = res
    return results


# -- select -----------------------------------------------------------------------------------
# Two selection stages: by fitness (below) and by a teacher's preferences
# (:class:`rewardsmith.icpl.PreferenceSelector`, ``select="preference"``).
def top_candidates(history: Sequence[Candidate], k: int, budget: int | None = None) -> list[Candidate]:
    """The ``k`` trained candidates with the highest mean fitness (the earliest first on ties).

    With ``budget``, only candidates trained for at least that many steps compete when there are
    any (successive halving measures stopped candidates at shorter budgets: not comparable).
    """
    import math

    trained = [c for c in history if c.trained and math.isfinite(c.fitness_mean)]  # type: ignore[arg-type]
    if budget is not None:
        trained = [c for c in trained if c.budget is None or c.budget >= budget] or trained
    return sorted(trained, key=lambda c: -c.fitness_mean)[:k]  # type: ignore[operator]


def select_by_fitness(history: Sequence[Candidate], budget: int | None = None) -> Candidate | None:
    """The trained candidate with the highest mean fitness (the earliest on ties), or None
    (``budget`` as for :func:`top_candidates`)."""
    top = top_candidates(history, 1, budget)
    return top[0] if top else None


__all__ = ["accept", "build_messages", "evaluate", "propose", "select_by_fitness", "top_candidates"]
