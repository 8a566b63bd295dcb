"""Potential programs: a coder-written ``Phi(s)``, checked like a reward program.

A potential program defines ``compute_potential`` over the task's variables and returns ONE
float, the potential of the state::

    def compute_potential(distance_to_goal):
        return -distance_to_goal

It goes through the same pipeline as reward programs (static validation, Numba compilation, the
sandboxed probe): :func:`check_potential` appends a two-line ``compute_reward`` entry that calls
``compute_potential`` and returns ``(phi, {"potential": phi})``, and checks that. Line numbers
in errors are the potential program's own (the entry comes after it). :func:`shaped_sparse`
builds what ``synthesize --shaping potential`` trains: the task's sparse reward plus
``F = gamma * Phi(s') - Phi(s)`` (:class:`~rewardsmith.shaping.potential.PotentialShaping`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.errors import RewardProgramError
from rewardsmith.tasks import TaskSpec, get_task

POTENTIAL_NAME = "compute_potential"
_DEFINES = re.compile(rf"^def\s+{POTENTIAL_NAME}\s*\(", re.MULTILINE)


def is_potential_source(source: Any) -> bool:
    """Whether ``source`` (program text or a ``.py`` path) is a potential program."""
    text = _text(source, missing_ok=True)
    return text is not None and bool(_DEFINES.search(text))


def _text(source: Any, missing_ok: bool = False) -> str | None:
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith(".py")):
        try:
            return Path(source).read_text()
        except OSError:
            if missing_ok:
                return None
            raise RewardProgramError("parse", f"no such file: {source}") from None
    return source if isinstance(source, str) else None


def reward_entry_source(text: str) -> str:
    """``text`` plus the ``compute_reward`` entry that returns its potential as the total.

    Raises:
        RewardProgramError: no ``compute_potential``, a ``compute_reward`` beside it, or a
            ``compute_potential`` that returns a pair instead of one float.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise RewardProgramError("parse", f"syntax error: {exc.msg}", exc.lineno) from None
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if POTENTIAL_NAME not in functions:
        raise RewardProgramError("signature", f"a potential program defines `{POTENTIAL_NAME}(...)` returning one "
                                 f"float; found {', '.join(functions) or 'no function'}")
    if "compute_reward" in functions:
        raise RewardProgramError("signature", "a potential program defines compute_potential, not compute_reward: "
                                 "the reward is the task's sparse reward plus the shaping term",
                                 functions["compute_reward"].lineno)
    fn = functions[POTENTIAL_NAME]
    for node in ast.walk(fn):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
            raise RewardProgramError("signature", f"{POTENTIAL_NAME}() returns one float, the potential Phi(s) of "
                                     "the state, not (total, components)", node.lineno)
    params = ", ".join(a.arg for a in fn.args.args)
    return (f"{text.rstrip()}\n\n\ndef compute_reward({params}):\n"
            f"    potential = {POTENTIAL_NAME}({params})\n"
            "    return potential, {\"potential\": potential}\n")


class PotentialProgram:
    """A checked, compiled potential: call it on ``(n, state_size)`` states for ``(n,)`` potentials.

    Attributes:
        source: the potential program as written (what is saved as ``reward.py``).
        program: the compiled :class:`~rewardsmith.program.RewardProgram` behind it.
    """

    def __init__(self, source: str, program: Any) -> None:
        self.source, self.program, self.task = source, program, program.task

    @property
    def key(self) -> str:
        return f"potential-{self.program.key}"

    @property
    def params(self) -> list[str]:
        return self.program.params

    def __call__(self, states: np.ndarray) -> np.ndarray:
        return self.program.batch(np.ascontiguousarray(states, dtype=np.float64))[0].copy()


def check_potential(source: str | Path, task: str | TaskSpec, run_probe: bool = True, **kwargs: Any) -> Any:
    """The reward-program :class:`~rewardsmith.program.CheckResult` of a potential program.

    Never raises for a bad program; on success ``result.program`` is a :class:`PotentialProgram`
    and ``result.components`` is ``["potential"]``.
    """
    from rewardsmith.program import CheckResult, check_program

    try:
        text = _text(source)
        assert text is not None
        result = check_program(reward_entry_source(text), task, run_probe=run_probe, **kwargs)
    except RewardProgramError as exc:
        result = CheckResult(ok=False)
        result.error, result.stage, result.line, result.exception = str(exc), exc.stage, exc.line, exc
        return result
    if result.ok:
        result.program = PotentialProgram(text, result.program)
    elif result.error:
        result.error = result.error.replace("compute_reward()", f"{POTENTIAL_NAME}()")
    return result


def load_potential(source: str | Path, task: str | TaskSpec, run_probe: bool = True, **kwargs: Any) -> PotentialProgram:
    """Like :func:`check_potential` but returns the :class:`PotentialProgram` or raises RewardProgramError."""
    result = check_potential(source, task, run_probe=run_probe, **kwargs)
    if result.exception is not None:
        raise result.exception
    return result.program


def check_any(source: str | Path, task: str | TaskSpec, run_probe: bool = True, **kwargs: Any) -> Any:
    """:func:`check_potential` for a potential program, else :func:`rewardsmith.program.check_program`."""
    from rewardsmith.program import check_program

    check = check_potential if is_potential_source(source) else check_program
    return check(source, task, run_probe=run_probe, **kwargs)


def load_any(source: str | Path, task: str | TaskSpec, run_probe: bool = True) -> Any:
    """A reward program's :class:`~rewardsmith.program.RewardProgram`, or for a potential program
    the sparse reward plus its shaping (:func:`shaped_sparse`); raises RewardProgramError."""
    from rewardsmith.program import load_program

    if is_potential_source(source):
        return shaped_sparse(source, task, run_probe=run_probe)
    return load_program(source, task, run_probe=run_probe)


def shaped_sparse(potential: str | Path | PotentialProgram, task: str | TaskSpec, gamma: float | None = None,
                  run_probe: bool = True) -> Any:
    """The task's sparse reward plus potential-based shaping with ``potential``.

    Its ``program`` is the :class:`PotentialProgram` (so a Trainer saves its source as ``reward.py``);
    ``gamma`` None is set by the Trainer from its algorithm.
    """
    from rewardsmith.program import sparse_program
    from rewardsmith.shaping.potential import PotentialShaping

    spec = get_task(task)
    phi = potential if isinstance(potential, PotentialProgram) else load_potential(potential, spec, run_probe=run_probe)
    shaping = PotentialShaping(phi, gamma=gamma, base=sparse_program(spec), task=spec)
    shaping.program, shaping.key = phi, phi.key
    return shaping


__all__ = ["POTENTIAL_NAME", "PotentialProgram", "check_any", "check_potential", "is_potential_source", "load_any",
           "load_potential", "reward_entry_source", "shaped_sparse"]
