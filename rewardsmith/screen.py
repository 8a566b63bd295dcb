"""Pre-screening reward programs on stored trajectories, before any training.

Each accepted candidate of a round is relabelled (one compiled batch call,
:func:`rewardsmith.wrappers.relabel`) on every stored episode of the run
(:mod:`rewardsmith.trajectories`: random-policy rollouts, and the evaluation episodes of the
candidates trained so far, whose true fitness is known) and judged:

* **reject** a reward whose per-step total is constant on the stored states, or non-finite on any;
* **reject** a near-duplicate of a candidate already evaluated (an earlier round, or an earlier
  index of this round): Spearman rank correlation of the per-step totals on the same stored
  states >= :data:`DUPLICATE_RHO` (one of the two need not be trained), and the totals a positive
  multiple of each other (:func:`scale_fit` >= :data:`DUPLICATE_R2`: a positive scale is what
  reward normalisation undoes; equal ranks alone admit a reweighted small component or ``exp(r)``),
  plus a constant only where no stored episode ends for real. Where one does (a pole falls, a
  hopper falls over), an offset is no detail: ``r + 1`` pays for surviving, ``r - 1`` for falling
  early, and a larger alive bonus trades speed for safety. Without terminations ``2*r + 1`` is a
  duplicate of ``r``;
* **flag** a reward one of whose components is :data:`DOMINANCE_RATIO` times larger (mean |value|)
  than the next, so the others barely count;
* **flag** a reward whose episode returns rank the stored episodes against their true fitness
  (CARD's trajectory-preference check): the Spearman rho between returns and fitness, over at
  least :data:`MIN_EPISODES` episodes of distinct fitness, is the verdict's **score** (None when
  not computable); a negative score is flagged.

:func:`screen_round` applies the verdicts to a round's candidates (``mode="reject"``: rejected
ones get status ``rejected``, stage ``screen``; ``mode="flag"``: verdicts only) and records them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.candidate import Candidate
from rewardsmith.tasks import TaskSpec
from rewardsmith.trajectories import EpisodeSet, random_rollouts

#: the per-step total counts as constant when its std is below this times ``1 + |mean|``
CONSTANT_RTOL = 1e-9
#: a component this many times larger (mean |value|) than the next one is flagged
DOMINANCE_RATIO = 1e3
#: Spearman rho of per-step totals at or above which two rewards are near-duplicates
DUPLICATE_RHO = 0.995
#: a duplicate must also be this close to a positive multiple of the other (see :func:`scale_fit`)
DUPLICATE_R2 = 0.99
#: episodes of distinct fitness the trajectory-preference score needs
MIN_EPISODES = 4
#: the random-policy rollouts stored once per run: episodes, steps per episode at most
RANDOM_EPISODES, RANDOM_MAX_STEPS = 8, 200
RANDOM_FILE = "screen/random.npz"
#: evaluation episodes screened per trained candidate at most (evenly spread over those saved), so
#: the store, and each duplicate comparison, stays small in long runs
EPISODES_PER_CANDIDATE = 4
#: seconds one program may take over the stored steps (they take milliseconds) before it is
#: killed and rejected as endless on states that policies reach
TIMEOUT_S = 30.0
DECISIONS = ("pass", "flag", "reject")


@dataclass
class ScreenVerdict:
    """The pre-screen's verdict on one candidate.

    Attributes:
        candidate: the candidate's name (``rNN/cMM``).
        decision: ``pass``, ``flag`` (trained, with a warning) or ``reject`` (not trained in
            ``reject`` mode).
        reasons: one line per finding (empty for a pass).
        score: Spearman rho between the reward's episode returns and the episodes' true fitness
            over the stored episodes (None when not computable).
        duplicate_of: the candidate it nearly duplicates, or None.
        n_steps, n_episodes: the stored steps and episodes it was judged on.
    """

    candidate: str
    decision: str = "pass"
    reasons: list[str] = field(default_factory=list)
    score: float | None = None
    duplicate_of: str | None = None
    n_steps: int = 0
    n_episodes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScreenVerdict:
        """From :meth:`to_dict` output (unknown keys are ignored)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def line(self) -> str:
        """A one-line summary: decision, score, reasons."""
        score = "" if self.score is None else f" (score {self.score:+.2f})"
        return f"{self.decision}{score}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho of ``a`` and ``b``; None when undefined (a constant side, too few points)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    rho = float(spearmanr(a, b)[0])
    return rho if math.isfinite(rho) else None


def scale_fit(a: np.ndarray, b: np.ndarray, offset: bool = False) -> float:
    """How well ``a`` is a positive multiple of ``b`` (plus a constant, with ``offset``): the R² of
    ``a ~ k*b (+ c)``, k > 0, against ``a``'s variation about its mean (1: exactly; <= 0: no better
    than a constant; -inf: k <= 0)."""
    if offset:
        a, b = a - a.mean(), b - b.mean()
    bb = float(b @ b)
    k = float(a @ b) / bb if bb > 0 else 0.0
    if k <= 0:
        return -math.inf
    ss = float(np.sum((a - a.mean()) ** 2))
    return 1.0 - float(np.sum((a - k * b) ** 2)) / ss if ss > 0 else -math.inf


def _constant(total: np.ndarray) -> bool:
    return bool(np.std(total) < CONSTANT_RTOL * (1.0 + abs(float(np.mean(total)))))


def relabel_program(program: Any, store: EpisodeSet) -> tuple[np.ndarray, np.ndarray, int]:
    """``(per-step totals, components, non-finite count)`` of ``program`` on every stored step.

    Through :func:`rewardsmith.wrappers.relabel` (one compiled batch call); the count is the
    values the runtime guard replaced by 0 (NaN/inf totals, rows that raised).
    """
    from rewardsmith.sources import ProgramSource
    from rewardsmith.wrappers import relabel

    source = ProgramSource(program)
    total, comps = relabel(source, store.transitions)
    return np.array(total), np.array(comps), source.nonfinite


class ScreenTimeout(Exception):
    """A program did not return on the stored states within the screen's wall limit."""


def relabel_guarded(program: Any, store: EpisodeSet, timeout_s: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`relabel_program` in a forked child killed after ``timeout_s`` (default
    :data:`TIMEOUT_S`): a reward that is endless only on the states trained policies reach must
    not hang the loop in its own process (numba code cannot be interrupted). Raises
    :class:`ScreenTimeout`; where ``os.fork`` is missing it runs in this process.
    """
    import io
    import os
    import select
    import signal
    import time

    timeout_s = TIMEOUT_S if timeout_s is None else timeout_s
    if not hasattr(os, "fork"):
        return relabel_program(program, store)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_fd)
            from rewardsmith.program import compiler

            compiler.PARALLEL_MIN_ROWS = 1 << 62  # serial kernel only: no thread pool after a fork
            total, comps, nonfinite = relabel_program(program, store)
            buf = io.BytesIO()
            np.savez(buf, total=total, comps=comps, nonfinite=np.array(nonfinite))
            data = memoryview(buf.getvalue())
            while data:
                data = data[os.write(write_fd, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks, deadline, done = [], time.monotonic() + timeout_s, False
    try:
        while not done:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(read_fd, 1 << 20)
                done = not chunk
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        if not done:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not done:
        raise ScreenTimeout(f"the reward did not return within {timeout_s:.0f} s on the {store.n_steps:,} stored "
                            "steps: endless or very slow on states that policies reach")
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise RuntimeError(f"relabelling on the stored steps failed in its child process (status {status})")
    with np.load(io.BytesIO(b"".join(chunks))) as data:
        return data["total"], data["comps"], int(data["nonfinite"])


def judge(name: str, program: Any, store: EpisodeSet, earlier: Sequence[tuple[str, np.ndarray]] = ()
          ) -> tuple[ScreenVerdict, np.ndarray | None]:
    """The verdict on ``program`` over ``store``, against the per-step totals of ``earlier`` candidates.

    Returns the verdict and the program's per-step totals (to compare later candidates with; None
    when it did not return within the wall limit, which rejects it).
    """
    v = ScreenVerdict(candidate=name, n_steps=store.n_steps, n_episodes=store.n_episodes)
    try:
        total, comps, nonfinite = relabel_guarded(program, store)
    except ScreenTimeout as exc:
        v.reasons, v.decision = [f"{exc}: not trained"], "reject"
        return v, None
    rejects: list[str] = []
    flags: list[str] = []
    if nonfinite:
        rejects.append(f"non-finite total (NaN/inf or an error) on {nonfinite} of {store.n_steps} stored steps")
    if _constant(total):
        rejects.append(f"constant total ({float(np.mean(total)):.4g}) on all {store.n_steps} stored steps: "
                       "it cannot tell any behaviour from another")
    if not rejects:
        best: tuple[float, str] | None = None
        # the same ranks are not enough: a duplicate is a positive multiple of the other (what reward
        # normalisation undoes), plus a constant only where no episode ends for real (there an offset
        # changes what surviving is worth: 1 + r is not r)
        offset = not bool(store.transitions.terminated.any())
        for other, other_total in earlier:
            rho = _spearman(total, other_total)
            if rho is None or rho < DUPLICATE_RHO or (best is not None and rho <= best[0]):
                continue
            if scale_fit(total, other_total, offset=offset) >= DUPLICATE_R2:
                best = (rho, other)
        if best is not None:
            v.duplicate_of = best[1]
            rejects.append(f"near-duplicate of {best[1]} (rho={best[0]:.4f}, {store.n_steps} steps): not trained")
    names = list(getattr(program, "components", []))
    if comps.ndim == 2 and comps.shape[1] >= 2:
        scale = np.abs(comps).mean(axis=0)
        order = np.argsort(scale)[::-1]
        top, second = scale[order[0]], scale[order[1]]
        if second > 0 and top / second >= DOMINANCE_RATIO:
            flags.append(f"component {names[order[0]]!r} is {top / second:.3g}x the next ({names[order[1]]!r}) "
                         "in mean |value|: the other components barely count")
    if len(np.unique(store.fitness)) >= MIN_EPISODES:
        v.score = _spearman(store.returns(total), store.fitness)
        if v.score is not None and v.score < 0:
            flags.append(f"its episode returns rank the stored episodes against their true fitness "
                         f"(rho={v.score:.2f} over {store.n_episodes} episodes)")
    v.reasons = rejects + flags
    v.decision = "reject" if rejects else ("flag" if flags else "pass")
    return v, total


# -- the run's stored episodes ----------------------------------------------------------------
def stored_episodes(task: TaskSpec, run_path: str | Path, history: Sequence[Candidate], seed: int = 0) -> EpisodeSet:
    """The run's random rollouts (made and saved on first use) and every trained candidate's evaluation
    episodes (at most :data:`EPISODES_PER_CANDIDATE` of each)."""
    from rewardsmith.train import EPISODES_FILE

    run_path = Path(run_path)
    rand = EpisodeSet.load(run_path / RANDOM_FILE, task.state_size)
    if rand is None:
        rand = random_rollouts(task, RANDOM_EPISODES, RANDOM_MAX_STEPS, seed=seed)
        rand.save(run_path / RANDOM_FILE)
    sets = [rand]
    for c in history:
        if c.trained:
            found = EpisodeSet.load(run_path / "rounds" / f"r{c.round:02d}" / f"c{c.index:02d}" / EPISODES_FILE,
                                    task.state_size)
            if found is not None:
                if found.n_episodes > EPISODES_PER_CANDIDATE:
                    found = found.take(np.linspace(0, found.n_episodes - 1, EPISODES_PER_CANDIDATE).round().astype(int))
                found.origin = np.array([c.name] * found.n_episodes, dtype=str)
                sets.append(found)
    store = EpisodeSet.concat(sets)
    assert store is not None  # the random rollouts are never empty
    return store


_PROGRAMS: dict[tuple[str, str], Any] = {}


def _program(source: str, task: TaskSpec) -> Any:
    """The compiled program of ``source`` (already checked: no probe), memoised per task."""
    from rewardsmith.program import load_program

    key = (task.ref, source)
    if key not in _PROGRAMS:
        if len(_PROGRAMS) > 256:
            _PROGRAMS.clear()
        _PROGRAMS[key] = load_program(source, task, run_probe=False)
    return _PROGRAMS[key]


def _evaluated(c: Candidate) -> bool:
    """Whether ``c`` was (or, in ``reject`` mode, would be) trained: a duplicate of it is redundant."""
    return bool(c.source) and c.status != "rejected" and (c.screen or {}).get("decision") != "reject"


def screen_candidates(task: TaskSpec, cands: Sequence[Candidate], history: Sequence[Candidate],
                      store: EpisodeSet) -> list[ScreenVerdict]:
    """Verdicts on the accepted ``cands`` (in order), each against ``history`` and the earlier ones of ``cands``."""
    earlier: list[tuple[str, np.ndarray]] = []
    for c in history:
        if _evaluated(c):
            try:
                earlier.append((c.name, relabel_guarded(_program(c.source, task), store)[0]))  # type: ignore[arg-type]
            except Exception:  # an old program that no longer compiles (or returns) cannot be duplicated
                continue
    verdicts = []
    for c in cands:
        if c.status != "accepted" or not c.source:
            continue
        verdict, total = judge(c.name, _program(c.source, task), store, earlier)
        verdicts.append(verdict)
        if verdict.decision != "reject" and total is not None:
            earlier.append((c.name, total))
    return verdicts


def screen_round(task: TaskSpec, run: Any, cands: Sequence[Candidate], history: Sequence[Candidate],
                 mode: str = "reject", seed: int = 0, log: Callable[[str], None] = print) -> list[ScreenVerdict]:
    """Screen a round's new candidates, set ``c.screen``, and in ``reject`` mode reject the rejects.

    Args:
        task: the task.
        run: the :class:`~rewardsmith.rundir.RunDir` (its stored episodes; the ``screen`` event).
        cands: the round's candidates after accept (only ``accepted`` ones are screened).
        history: the candidates of earlier rounds.
        mode: ``off`` (nothing), ``flag`` (verdicts only) or ``reject``.
        seed: seeds the random rollouts.
        log: where one line per verdict goes (rejections are logged by the loop).

    The screen never stops a run: when it cannot run (e.g. the env cannot be made) it logs why,
    records a ``screen`` event with the error and leaves every candidate to train.
    """
    if mode == "off":
        return []
    try:
        store = stored_episodes(task, run.path, history, seed=seed)
        verdicts = screen_candidates(task, cands, history, store)
    except Exception as exc:
        log(f"  screen skipped: {type(exc).__name__}: {exc}")
        run.event("screen", mode=mode, error=f"{type(exc).__name__}: {exc}")
        return []
    by_name = {c.name: c for c in cands}
    for v in verdicts:
        c = by_name[v.candidate]
        c.screen = v.to_dict()
        if v.decision == "reject" and mode == "reject":
            c.status, c.stage, c.error = "rejected", "screen", f"pre-screen: {'; '.join(v.reasons)}"
        else:
            trains = " (trained anyway: --screen flag)" if v.decision == "reject" else ""
            log(f"  r{c.round} c{c.index}: screen {v.line}{trains}")
    rounds = sorted({c.round for c in cands})
    run.event("screen", round=rounds[0] if len(rounds) == 1 else rounds, mode=mode, n_steps=store.n_steps,
              n_episodes=store.n_episodes, verdicts=[v.to_dict() for v in verdicts])
    return verdicts


def verdict_of(c: Candidate) -> ScreenVerdict | None:
    """The candidate's saved verdict, or None."""
    return ScreenVerdict.from_dict(c.screen) if isinstance(c.screen, dict) else None


__all__ = ["DECISIONS", "ScreenTimeout", "ScreenVerdict", "judge", "relabel_guarded", "relabel_program", "scale_fit", "screen_candidates",
           "screen_round", "stored_episodes", "verdict_of"]
