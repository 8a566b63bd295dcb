"""Tasks: what a reward program may read, what success means, and how to train.

A :class:`TaskSpec` names a gymnasium env, a natural-language description, the *reward-state
variables* a reward program may read (each with a shape, a unit, a meaning and a ``source``
expression that reads it from MuJoCo data, the observation, the info dict or the action), the
*fitness* (the ground-truth per-episode metric), the env's own reward as the human baseline, a
sparse baseline reward program, and default training budgets.

Variable sources are Python expressions over ``data`` (``mujoco.MjData``), ``model``
(``mujoco.MjModel``), ``obs``, ``info``, ``action``, ``np`` and ``math``; for example
``data.body("torso").xpos[2]`` or ``info["x_velocity"]``. Named MuJoCo look-ups such as
``data.body("torso")`` are resolved once per env, so reading costs a few array reads per step.

Register your own task::

    from rewardsmith import TaskSpec, Variable, Fitness, register_task

    register_task(TaskSpec(
        name="my-walker",
        env_id="MyWalker-v0",              # any id gymnasium.make() knows
        description="Walk forward as fast as possible without falling.",
        variables=[
            Variable("x_velocity", (), "forward velocity of the torso", "m/s", "data.qvel[0]"),
            Variable("action", (3,), "joint torques", "N m", "action"),
        ],
        fitness=Fitness("forward distance travelled", "data.qpos[0]", reduce="delta", unit="m"),
    ))
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rewardsmith.errors import TaskNotFoundError, TaskSpecError

SOURCE_NAMES = frozenset({"data", "model", "obs", "info", "action", "np", "math"})
REDUCTIONS = ("sum", "mean", "final", "delta", "max", "min", "length")
FUNCTION_NAME = "compute_reward"


@dataclass(frozen=True)
class Variable:
    """One reward-state variable.

    Attributes:
        name: a Python identifier; the reward program's parameter name.
        shape: ``()`` for a scalar, ``(n,)`` for a vector.
        description: its meaning in plain words (shown to the coder).
        unit: physical unit, e.g. ``"m/s"``.
        source: expression that reads it (see the module docstring).
    """

    name: str
    shape: tuple[int, ...]
    description: str
    unit: str = ""
    source: str = ""

    @property
    def size(self) -> int:
        """Number of float64 values the variable occupies in a flat state vector."""
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def type_hint(self) -> str:
        """``float`` for scalars, ``np.ndarray`` otherwise (used in the signature)."""
        return "float" if self.shape == () else "np.ndarray"


@dataclass(frozen=True)
class Fitness:
    """The task's ground-truth metric, measured per episode.

    Attributes:
        description: what it measures, in plain words.
        source: an expression (same names as variable sources) evaluated on the state.
        reduce: how per-step values become one episode value: ``sum``, ``mean``, ``final``,
            ``delta`` (final minus value at reset), ``max``, ``min``, or ``length`` (episode
            length in steps; ``source`` is ignored).
        threshold: an episode succeeds when its fitness is ``>= threshold``; None if no such notion.
        unit: unit of the episode value.
    """

    description: str
    source: str = ""
    reduce: str = "sum"
    threshold: float | None = None
    unit: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """A reward-design task. See the module docstring for an example.

    ``version`` numbers a released definition: a definition is never edited in place once results
    exist for it; a fix registers the same ``name`` with a higher version. ``get_task(name)`` gives
    the newest, ``get_task("name@1")`` an older one, and every result records :attr:`ref`.
    """

    name: str
    env_id: str
    description: str
    variables: tuple[Variable, ...]
    fitness: Fitness
    version: int = 1
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    has_builtin_reward: bool = True
    builtin_reward_description: str = ""
    sparse_reward: str | None = None
    human_reward: str | None = None
    default_steps: int = 200_000
    default_algo: str = "ppo"
    algo_kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    eval_episodes: int = 10
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        _validate_spec(self)

    @property
    def ref(self) -> str:
        """``name@version``: what results record, and what :func:`get_task` resolves exactly."""
        return f"{self.name}@{self.version}"

    # -- the reward-program contract ----------------------------------------------------
    @property
    def variable_names(self) -> list[str]:
        """Names of the reward-state variables, in declaration order."""
        return [v.name for v in self.variables]

    def variable(self, name: str) -> Variable:
        """The variable called ``name``."""
        for var in self.variables:
            if var.name == name:
                return var
        raise TaskSpecError(f"task {self.name!r} has no variable {name!r}")

    @property
    def signature(self) -> str:
        """The exact function header a reward program must have."""
        args = ", ".join(f"{v.name}: {v.type_hint}" for v in self.variables)
        return f"def {FUNCTION_NAME}({args}) -> tuple[float, dict[str, float]]:"

    @functools.cached_property
    def state_size(self) -> int:
        """Length of the flat float64 state vector holding every variable."""
        return sum(v.size for v in self.variables)

    def slices(self) -> dict[str, slice]:
        """Where each variable lives in the flat state vector."""
        return dict(self._slices)

    @functools.cached_property
    def _slices(self) -> dict[str, slice]:
        out, offset = {}, 0
        for var in self.variables:
            out[var.name] = slice(offset, offset + var.size)
            offset += var.size
        return out

    # -- environments -------------------------------------------------------------------
    def make_env(self, render_mode: str | None = None, **overrides: Any):
        """Create the bare gymnasium env (no reward replaced)."""
        import gymnasium as gym

        kwargs = {**self.env_kwargs, **overrides}
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        try:
            return gym.make(self.env_id, **kwargs)
        except gym.error.Error as exc:
            raise TaskSpecError(f"task {self.name!r}: cannot make env {self.env_id!r}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what ``rewardsmith tasks show --json`` prints)."""
        return {
            "name": self.name,
            "version": self.version,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "description": self.description,
            "variables": [
                {"name": v.name, "shape": list(v.shape), "unit": v.unit,
                 "description": v.description, "source": v.source}
                for v in self.variables
            ],
            "signature": self.signature,
            "fitness": {**asdict(self.fitness)},
            "builtin_reward": self.builtin_reward_description if self.has_builtin_reward else None,
            "sparse_reward": self.sparse_reward,
            "human_reward": self.human_reward,
            "default_steps": self.default_steps,
            "default_algo": self.default_algo,
            "eval_episodes": self.eval_episodes,
            "tags": list(self.tags),
        }


def _check_source(task: str, what: str, source: str) -> None:
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise TaskSpecError(f"task {task!r}: {what} source {source!r} is not an expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in SOURCE_NAMES:
            raise TaskSpecError(
                f"task {task!r}: {what} source {source!r} uses {node.id!r}; "
                f"sources may use only {', '.join(sorted(SOURCE_NAMES))}"
            )


def _validate_spec(spec: TaskSpec) -> None:
    if not spec.name or not all(c.isalnum() or c in "-_" for c in spec.name):
        raise TaskSpecError(f"task name {spec.name!r} must be non-empty letters, digits, '-' or '_'")
    if not spec.variables:
        raise TaskSpecError(f"task {spec.name!r} declares no variables")
    seen: set[str] = set()
    for var in spec.variables:
        if not var.name.isidentifier() or var.name.startswith("_"):
            raise TaskSpecError(f"task {spec.name!r}: variable name {var.name!r} must be a public identifier")
        if var.name in seen:
            raise TaskSpecError(f"task {spec.name!r}: variable {var.name!r} declared twice")
        seen.add(var.name)
        if len(var.shape) > 1:
            raise TaskSpecError(f"task {spec.name!r}: variable {var.name!r} must be a scalar or a vector")
        _check_source(spec.name, f"variable {var.name!r}", var.source or var.name)
    if spec.fitness.reduce not in REDUCTIONS:
        raise TaskSpecError(
            f"task {spec.name!r}: fitness reduce {spec.fitness.reduce!r} is not one of {', '.join(REDUCTIONS)}"
        )
    if spec.fitness.reduce != "length":
        if not spec.fitness.source:
            raise TaskSpecError(f"task {spec.name!r}: fitness needs a source expression")
        _check_source(spec.name, "fitness", spec.fitness.source)
    if not isinstance(spec.version, int) or spec.version < 1:
        raise TaskSpecError(f"task {spec.name!r}: version must be a positive integer, got {spec.version!r}")
    if spec.default_algo not in ("ppo", "sac"):
        raise TaskSpecError(f"task {spec.name!r}: default_algo must be 'ppo' or 'sac'")


_REGISTRY: dict[str, dict[int, TaskSpec]] = {}


def register_task(spec: TaskSpec, overwrite: bool = False) -> TaskSpec:
    """Add ``spec`` to the registry.

    A new ``version`` of a registered name is added beside the older ones (the newest becomes the
    default); registering an existing ``name@version`` again needs ``overwrite=True``.
    """
    _ensure_builtins()
    versions = _REGISTRY.setdefault(spec.name, {})
    if spec.version in versions and not overwrite:
        raise TaskSpecError(f"task {spec.ref!r} is already registered (pass overwrite=True to replace it, "
                            f"or register a fix as version {max(versions) + 1})")
    versions[spec.version] = spec
    return spec


def get_task(name: str | TaskSpec) -> TaskSpec:
    """The registered task called ``name`` (newest version), or exactly ``name@version``.

    A TaskSpec passes through. A path ending in ``.py`` is a task file (as ``rewardsmith tasks
    describe --out`` writes): it is run, and the task it registers (its ``TASK``) is returned.
    """
    if isinstance(name, TaskSpec):
        return name
    _ensure_builtins()
    if str(name).endswith(".py"):
        return _task_from_file(str(name))
    base, _, version = str(name).partition("@")
    versions = _REGISTRY.get(base)
    if not versions:
        raise TaskNotFoundError(name, list(_REGISTRY))
    if not version:
        return versions[max(versions)]
    try:
        return versions[int(version.lstrip("v"))]
    except (ValueError, KeyError):
        known = ", ".join(f"{base}@{v}" for v in sorted(versions))
        raise TaskSpecError(f"task {name!r} has no such version (known: {known})") from None


def _task_from_file(path: str) -> TaskSpec:
    import os
    import runpy

    if not os.path.isfile(path):
        raise TaskSpecError(f"no task file {path!r}")
    try:
        namespace = runpy.run_path(path)
    except TaskSpecError as exc:
        raise TaskSpecError(f"{path}: {exc}") from None
    task = namespace.get("TASK")
    if not isinstance(task, TaskSpec):
        raise TaskSpecError(f"{path} defines no TASK = register_task(TaskSpec(...))")
    return task


def task_versions(name: str) -> list[TaskSpec]:
    """Every registered version of ``name``, oldest first."""
    _ensure_builtins()
    versions = _REGISTRY.get(name)
    if not versions:
        raise TaskNotFoundError(name, list(_REGISTRY))
    return [versions[v] for v in sorted(versions)]


def list_tasks() -> list[TaskSpec]:
    """The newest version of every registered task, built-ins first, in registration order."""
    _ensure_builtins()
    return [versions[max(versions)] for versions in _REGISTRY.values()]


_BUILTINS_LOADED = False


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from rewardsmith.builtin_tasks import BUILTIN_TASKS

        for spec in BUILTIN_TASKS:
            _REGISTRY.setdefault(spec.name, {}).setdefault(spec.version, spec)


def variables_table(spec: TaskSpec) -> Iterable[tuple[str, str, str, str]]:
    """Rows ``(name, shape, unit, description)`` for display."""
    for v in spec.variables:
        yield v.name, "scalar" if v.shape == () else str(v.shape), v.unit, v.description


__all__ = [
    "FUNCTION_NAME",
    "Fitness",
    "TaskSpec",
    "Variable",
    "get_task",
    "list_tasks",
    "register_task",
    "task_versions",
    "variables_table",
]
