"""Reward programs: validated, Numba-compiled, probed in a sandbox, then run in-process.

A reward program is a Python function over a task's variables returning
``(total, {component_name: value})``::

    def compute_reward(x_velocity, action):
        forward = x_velocity
        ctrl = 0.001 * np.sum(action * action)
        return forward - ctrl, {"forward": forward, "ctrl": -ctrl}

:func:`check_program` runs the four stages and never raises for a bad program; :func:`load_program`
raises :class:`~rewardsmith.errors.RewardProgramError` instead.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.errors import RewardProgramError
from rewardsmith.program.compiler import CompiledProgram, compile_validated, python_function
from rewardsmith.program.probe import ProbeReport, probe
from rewardsmith.program.states import sample_states
from rewardsmith.program.validate import ValidatedProgram, validate_source
from rewardsmith.tasks import TaskSpec, get_task


class RewardProgram:
    """A checked, compiled reward program bound to a task.

    Call :meth:`batch` on ``(n, state_size)`` states (one compiled call), or call the program
    like the Python function it is: ``program(x_velocity=1.0, action=np.zeros(3))``.
    """

    def __init__(self, validated: ValidatedProgram, compiled: CompiledProgram, task: TaskSpec) -> None:
        self.validated = validated
        self.compiled = compiled
        self.task = task
        self.counters = np.zeros(2, dtype=np.int64)

    @property
    def source(self) -> str:
        """The program's source, as given."""
        return self.validated.source

    @property
    def components(self) -> list[str]:
        """Component names, in the column order of :meth:`batch`'s output."""
        return list(self.compiled.components)

    @property
    def params(self) -> list[str]:
        """The variables the program reads."""
        return list(self.compiled.params)

    @property
    def key(self) -> str:
        """Content hash (the compile-cache key)."""
        return self.compiled.key

    @property
    def nonfinite_count(self) -> int:
        """Calls whose total was NaN/inf and was replaced by 0, so far."""
        return int(self.counters[0])

    @property
    def error_count(self) -> int:
        """Calls that raised (e.g. an out-of-bounds index) and were replaced by 0, so far."""
        return int(self.counters[1])

    def batch(self, states: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None,
              parallel: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Evaluate the program on every row of ``states``.

        Args:
            states: ``(n, state_size)`` float64, C-contiguous (see :func:`rewardsmith.state.join_state`).
            out: optional preallocated ``(total (n,), components (n, C))``.
            parallel: use the parallel kernel (same results); default: for large batches only
                (see :meth:`~rewardsmith.program.compiler.CompiledProgram.run`).

        Returns:
            ``total`` of shape ``(n,)`` and ``components`` of shape ``(n, C)``; non-finite values
            are replaced by 0 and counted in :attr:`nonfinite_count`.
        """
        states = np.ascontiguousarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] != self.task.state_size:
            raise ValueError(f"states must have shape (n, {self.task.state_size}), got {states.shape}")
        n = states.shape[0]
        if out is None:
            out = (np.empty(n), np.empty((n, len(self.compiled.components))))
        self.compiled.run(states, out[0], out[1], self.counters, parallel)
        return out

    def __call__(self, **variables: Any) -> tuple[float, dict[str, float]]:
        """Evaluate once on named variables; returns ``(total, {name: value})``."""
        missing = [p for p in self.params if p not in variables]
        if missing:
            raise TypeError(f"missing variables: {', '.join(missing)}")
        args = [float(variables[p]) if self.task.variable(p).shape == ()
                else np.ascontiguousarray(variables[p], dtype=np.float64) for p in self.params]
        total, comps = self.compiled.entry(*args)
        return float(total), {n: float(v) for n, v in zip(self.components, comps)}

    def python(self) -> Any:
        """The program as a plain Python function (reference and benchmark baseline)."""
        return python_function(self.validated)


@dataclass
class CheckResult:
    """The outcome of :func:`check_program` (what ``rewardsmith check --json`` prints).

    Attributes:
        ok: accepted or not.
        error: the one-line reason for rejection, else None.
        stage: the stage that rejected it (``parse``/``validate``/``signature``/``compile``/``probe``).
        line: the source line at fault, when known.
        components: component names (empty when rejected before compiling).
        params: the variables the program reads.
        notes: non-fatal remarks.
        timings: seconds per stage.
        probe: the probe's report, when it ran.
        program: the usable program when accepted.
        exception: the rejection as an exception (what :func:`load_program` raises).
    """

    ok: bool
    error: str | None = None
    stage: str | None = None
    line: int | None = None
    components: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    probe: ProbeReport | None = None
    program: RewardProgram | None = None
    exception: RewardProgramError | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (without the program object)."""
        return {"ok": self.ok, "error": self.error, "stage": self.stage, "line": self.line,
                "components": self.components, "params": self.params, "notes": self.notes,
                "timings": {k: round(v, 4) for k, v in self.timings.items()},
                "probe": self.probe.to_dict() if self.probe else None}


def _read_source(source: str | Path) -> str:
    if isinstance(source, Path) or ("\n" not in str(source) and str(source).endswith(".py")):
        path = Path(source)
        if not path.is_file():
            raise RewardProgramError("parse", f"no such file: {path}")
        return path.read_text()
    return str(source)


_PROBES: dict[tuple, ProbeReport] = {}


def _probe_memoized(text: str, compiled: CompiledProgram, spec: TaskSpec, states: np.ndarray | None,
                    probe_kwargs: dict[str, Any]) -> ProbeReport:
    """Probe once per (program, states, limits) in this process; timeouts are not memoised."""
    states = sample_states(spec) if states is None else np.ascontiguousarray(states, dtype=np.float64)
    memo = (compiled.key, hashlib.sha256(states.tobytes()).hexdigest(), tuple(sorted(probe_kwargs.items())))
    if memo in _PROBES:
        return _PROBES[memo]
    report = probe(text, spec, states=states, compiled=compiled, **probe_kwargs)
    if report.ok or "timed out" not in (report.error or ""):
        _PROBES[memo] = report
    return report


def _gap_notes(report: ProbeReport) -> list[str]:
    """A note when the components do not add up to the total on the probe's states."""
    gap = report.component_gap
    if not gap or gap == [0.0, 0.0]:
        return []
    return [f"components do not add up to the total: total - sum(components) ranges over "
            f"[{gap[0]:.4g}, {gap[1]:.4g}] on the probe's states (max |gap| {max(map(abs, gap)):.4g}); "
            "a term of the total that is no component is invisible in the per-component feedback"]


def check_program(source: str | Path, task: str | TaskSpec, run_probe: bool = True,
                  states: np.ndarray | None = None, **probe_kwargs: Any) -> CheckResult:
    """Run every stage on ``source`` (a program or a ``.py`` path) for ``task``; never raises for a bad program."""
    spec = get_task(task)
    result = CheckResult(ok=False)
    t = time.perf_counter()
    try:
        text = _read_source(source)
        validated = validate_source(text, spec)
        result.params, result.notes = validated.params, validated.notes
        result.timings["validate"] = time.perf_counter() - t
        t = time.perf_counter()
        compiled = compile_validated(validated, spec)
        result.components = list(compiled.components)
        result.timings["compile"] = time.perf_counter() - t
        if run_probe:
            t = time.perf_counter()
            report = _probe_memoized(text, compiled, spec, states, probe_kwargs)
            result.probe = report
            result.timings["probe"] = time.perf_counter() - t
            if not report.ok:
                raise RewardProgramError("probe", f"{validated.entry}() {report.error}")
            result.notes = [*result.notes, *_gap_notes(report)]
    except RewardProgramError as exc:
        result.error, result.stage, result.line = str(exc), exc.stage, exc.line
        result.exception = exc
        return result
    result.ok = True
    result.program = RewardProgram(validated, compiled, spec)
    return result


def load_program(source: str | Path, task: str | TaskSpec, run_probe: bool = True, **kwargs: Any) -> RewardProgram:
    """Like :func:`check_program` but returns the program or raises :class:`RewardProgramError`."""
    result = check_program(source, task, run_probe=run_probe, **kwargs)
    if result.exception is not None:
        raise result.exception
    assert result.program is not None
    return result.program


def sparse_program(task: str | TaskSpec) -> RewardProgram:
    """The task's sparse baseline reward, as a program."""
    spec = get_task(task)
    if not spec.sparse_reward:
        raise RewardProgramError("validate", f"task {spec.name!r} defines no sparse reward")
    return load_program(spec.sparse_reward, spec, run_probe=False)


__all__ = ["CheckResult", "RewardProgram", "check_program", "load_program", "sample_states", "sparse_program"]
