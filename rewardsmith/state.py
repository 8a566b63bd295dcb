"""Reading a task's reward-state variables from a live env, cheaply.

For each env a :class:`StateReader` generates one small Python function from the task's variable
sources. Named MuJoCo look-ups (``data.body("torso")``) are hoisted out of it and resolved once,
so a step costs a handful of array reads into a preallocated float64 row: MuJoCo's state is never
copied wholesale.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

import numpy as np

from rewardsmith.errors import TaskSpecError
from rewardsmith.tasks import TaskSpec

_NAMED = {"body", "joint", "jnt", "site", "geom", "actuator", "sensor", "camera", "tendon", "light", "bind"}


class _Hoist(ast.NodeTransformer):
    """Hoist MuJoCo paths (``data.qpos``, ``data.body("torso").xpos``) out of the per-step code.

    A path is an attribute chain rooted at ``data``/``model``, possibly through named look-ups
    with constant arguments. It is evaluated once at bind time and kept when it yields an array
    view (or a named accessor): MuJoCo's buffers never move, so the view stays current. Scalars
    (``data.time``) are left to be read every step.
    """

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.hoisted: dict[str, Any] = {}
        self._keys: dict[str, str] = {}

    @staticmethod
    def _is_path(node: ast.AST) -> bool:
        while True:
            if isinstance(node, ast.Name):
                return node.id in ("data", "model")
            if isinstance(node, ast.Attribute) and not node.attr.startswith("_"):
                node = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in _NAMED and not node.keywords \
                    and all(isinstance(a, ast.Constant) for a in node.args):
                node = node.func.value
            else:
                return False

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, (ast.Attribute, ast.Call)) and self._is_path(node):
            key = ast.unparse(node)
            if key not in self._keys:
                try:
                    value = eval(compile(ast.Expression(node), "<source>", "eval"), self.namespace)
                except Exception as exc:
                    raise TaskSpecError(f"cannot resolve {key}: {exc}") from None
                if isinstance(value, (bool, int, float, np.generic)):
                    return node  # a scalar: must be read every step
                self._keys[key] = f"h{len(self._keys)}"
                self.hoisted[self._keys[key]] = value
            return ast.copy_location(ast.Name(self._keys[key], ast.Load()), node)
        return self.generic_visit(node)


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
        namespace: dict[str, Any] = {"np": np, "math": math, "data": self._data, "model": self._model}
        hoist = _Hoist(namespace)
        body: list[tuple[int, int, str]] = []  # (out start, out stop, expression)
        for var, sl in zip(task.variables, task.slices().values()):
            try:
                tree = hoist.visit(ast.parse(var.source or var.name, mode="eval"))
            except TaskSpecError as exc:
                raise TaskSpecError(f"task {task.name!r}, variable {var.name!r} on env {task.env_id!r}: {exc}") from None
            expr = ast.unparse(tree.body)
            if var.shape != () and not self._is_flat(expr, tree, {**namespace, **hoist.hoisted}, var.size):
                expr = f"np.ravel({expr})"
            body.append((sl.start, sl.stop, expr))
        lines = ["def read(obs, info, action, out):"]
        for start, stop, expr in _merge_runs(body):
            lines.append(f"    out[{start}] = {expr}" if stop == start + 1 and "[" in expr and ":" not in expr
                         else f"    out[{start}:{stop}] = {expr}")
        lines.append("    return out")
        namespace.update(hoist.hoisted)
        self.source = "\n".join(lines)
        exec(compile(self.source, f"<reader {task.name}>", "exec"), namespace)
        self._read = namespace["read"]

    @staticmethod
    def _is_flat(expr: str, tree: ast.AST, namespace: dict[str, Any], size: int) -> bool:
        """Whether ``expr`` is known to give a 1-d array of ``size`` (then no ravel is needed)."""
        if expr == "action":
            return True
        if any(isinstance(n, ast.Name) and n.id in ("obs", "info", "action") for n in ast.walk(tree)):
            return False
        try:
            value = eval(expr, namespace)
        except Exception:
            return False
        return isinstance(value, np.ndarray) and value.ndim == 1 and value.size == size

    def read(self, obs: Any, info: dict, action: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Fill ``out`` (shape ``(task.state_size,)``) with the current variables and return it."""
        if out is None:
            out = np.empty(self.task.state_size, dtype=np.float64)
        try:
            return self._read(obs, info, action, out)
        except Exception as exc:
            raise TaskSpecError(f"task {self.task.name!r}: reading reward-state variables failed: {exc!r}") from exc


_INDEXED = re.compile(r"^(h\d+)\[(\d+)(?::(\d+))?\]$")


def _merge_runs(body: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Merge reads of consecutive elements of one hoisted array into one slice copy.

    ``out[0] = h0[0]; out[1] = h0[1]`` becomes ``out[0:2] = h0[0:2]``: fewer numpy calls per step.
    """
    merged: list[tuple[int, int, str, str | None, int, int]] = []
    for start, stop, expr in body:
        m = _INDEXED.match(expr)
        if m:
            lo = int(m.group(2))
            hi = int(m.group(3)) if m.group(3) else lo + 1
            if hi - lo == stop - start and merged:
                p_start, p_stop, _, p_arr, p_lo, p_hi = merged[-1]
                if p_arr == m.group(1) and p_stop == start and p_hi == lo:
                    merged[-1] = (p_start, stop, "", p_arr, p_lo, hi)
                    continue
            merged.append((start, stop, expr, m.group(1), lo, hi))
        else:
            merged.append((start, stop, expr, None, 0, 0))
    out = []
    for start, stop, expr, arr, lo, hi in merged:
        if arr is not None and not (stop == start + 1 and expr):
            expr = f"{arr}[{lo}:{hi}]"
        out.append((start, stop, expr))
    return out


def make_fitness_reader(task: TaskSpec, env: Any):
    """A callable ``f(obs, info, action) -> float`` for the task's fitness source (None for ``length``)."""
    if task.fitness.reduce == "length":
        return None
    base = env.unwrapped
    namespace = {"np": np, "math": math, "data": getattr(base, "data", None), "model": getattr(base, "model", None)}
    code = compile(task.fitness.source, f"<fitness {task.name}>", "eval")

    def fitness(obs: Any, info: dict, action: Any) -> float:
        return float(eval(code, namespace, {"obs": obs, "info": info, "action": action}))

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
