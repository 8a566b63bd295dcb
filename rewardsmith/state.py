"""Reading a task's reward-state variables from a live env, cheaply.

For each env a :class:`StateReader` generates one small Python function from the task's variable
sources. Named MuJoCo look-ups (``data.body("torso")``) are hoisted out of it and resolved once,
so a step costs a handful of array reads into a preallocated float64 row: MuJoCo's state is never
copied wholesale.
"""

from __future__ import annotations

import ast
import math
from typing import Any

import numpy as np

from rewardsmith.errors import TaskSpecError
from rewardsmith.tasks import TaskSpec

_NAMED = {"body", "joint", "jnt", "site", "geom", "actuator", "sensor", "camera", "tendon", "light", "bind"}


class _Hoist(ast.NodeTransformer):
    """Replace ``data.body("x")`` / ``model.joint("y")`` calls with constants bound once."""

    def __init__(self) -> None:
        self.hoisted: dict[str, ast.expr] = {}
        self._keys: dict[str, str] = {}

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id in ("data", "model") and func.attr in _NAMED
                and all(isinstance(a, ast.Constant) for a in node.args) and not node.keywords):
            key = ast.unparse(node)
            if key not in self._keys:
                self._keys[key] = f"h{len(self._keys)}"
                self.hoisted[self._keys[key]] = node
            return ast.copy_location(ast.Name(self._keys[key], ast.Load()), node)
        return node


class StateReader:
    """Reads a task's variables from one env into a flat float64 vector.

    Args:
        task: the task whose variables to read.
        env: a gymnasium env (wrapped or not) whose ``unwrapped`` has MuJoCo ``data``/``model``
            when any source uses them.
    """

    def __init__(self, task: TaskSpec, env: Any) -> None:
        self.task = task
        base = env.unwrapped
        self._data = getattr(base, "data", None)
        self._model = getattr(base, "model", None)
        hoist = _Hoist()
        lines = ["def read(obs, info, action, out):"]
        for var, sl in zip(task.variables, task.slices().values()):
            tree = hoist.visit(ast.parse(var.source or var.name, mode="eval"))
            expr = ast.unparse(tree.body)
            if var.shape == ():
                lines.append(f"    out[{sl.start}] = {expr}")
            else:
                lines.append(f"    out[{sl.start}:{sl.stop}] = np.ravel({expr})")
        lines.append("    return out")
        namespace: dict[str, Any] = {"np": np, "math": math, "data": self._data, "model": self._model}
        for name, node in hoist.hoisted.items():
            try:
                namespace[name] = eval(compile(ast.Expression(node), "<source>", "eval"), namespace)  # noqa: S307
            except Exception as exc:  # a wrong body/site name is the usual cause
                raise TaskSpecError(
                    f"task {task.name!r}: cannot resolve {ast.unparse(node)} on env {task.env_id!r}: {exc}"
                ) from None
        self.source = "\n".join(lines)
        exec(compile(self.source, f"<reader {task.name}>", "exec"), namespace)  # noqa: S102
        self._read = namespace["read"]

    def read(self, obs: Any, info: dict, action: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Fill ``out`` (shape ``(task.state_size,)``) with the current variables and return it."""
        if out is None:
            out = np.empty(self.task.state_size, dtype=np.float64)
        try:
            return self._read(obs, info, action, out)
        except Exception as exc:
            raise TaskSpecError(f"task {self.task.name!r}: reading reward-state variables failed: {exc!r}") from exc


def make_fitness_reader(task: TaskSpec, env: Any):
    """A callable ``f(obs, info, action) -> float`` for the task's fitness source (None for ``length``)."""
    if task.fitness.reduce == "length":
        return None
    base = env.unwrapped
    namespace = {"np": np, "math": math, "data": getattr(base, "data", None), "model": getattr(base, "model", None)}
    code = compile(task.fitness.source, f"<fitness {task.name}>", "eval")

    def fitness(obs: Any, info: dict, action: Any) -> float:
        return float(eval(code, namespace, {"obs": obs, "info": info, "action": action}))  # noqa: S307

    return fitness


def split_state(task: TaskSpec, states: np.ndarray) -> dict[str, np.ndarray]:
    """Views of a ``(..., state_size)`` array, one per variable, with the variable's shape."""
    out = {}
    for var, sl in zip(task.variables, task.slices().values()):
        part = states[..., sl]
        out[var.name] = part[..., 0] if var.shape == () else part.reshape(states.shape[:-1] + var.shape)
    return out


def join_state(task: TaskSpec, variables: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`split_state`: stack per-variable arrays ``(N, *shape)`` into ``(N, state_size)``."""
    missing = [n for n in task.variable_names if n not in variables]
    if missing:
        raise TaskSpecError(f"task {task.name!r}: missing variables {missing} (expected {task.variable_names})")
    n = len(np.asarray(variables[task.variables[0].name]))
    out = np.empty((n, task.state_size), dtype=np.float64)
    for var, sl in zip(task.variables, task.slices().values()):
        arr = np.asarray(variables[var.name], dtype=np.float64).reshape(n, -1)
        if arr.shape[1] != var.size:
            raise TaskSpecError(
                f"task {task.name!r}: variable {var.name!r} has {arr.shape[1]} values per row, expected {var.size}"
            )
        out[:, sl] = arr
    return out
