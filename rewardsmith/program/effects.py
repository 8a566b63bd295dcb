"""Static proof that a reward program never writes into its inputs.

The batch kernel can hand a program views of the caller's states. A program that could write
into them (``action[0] = 0.0``, ``a = action; a += 1``, ``np.add(a, b, action)``,
``np.nan_to_num(x, False)``) gets a per-row scratch copy instead; :func:`may_write_inputs`
decides which, conservatively (any doubt answers True, and the copy stays):

- no subscript or attribute is ever assigned, augmented, deleted or a ``for`` target, in any
  function, whatever it indexes (so views and aliases of inputs need no tracking there);
- no call passes an array to a parameter that numpy writes into (``out``, ``copy``, ``where``, a
  ufunc's extra positional argument), and no method is called but a few pure ones;
- ``x += ...`` on a plain name only where ``x`` can never alias an input: it is not a vector
  parameter, nor any parameter of a helper, nor bound (anywhere in its function) to a name, view,
  attribute, method result or tuple element that might alias one.
"""

from __future__ import annotations

import ast
import inspect

import numpy as np

# keyword arguments through which a numpy function writes into an array it was given
_WRITING_KEYWORDS = frozenset({"out", "copy", "where"})
# array methods that never write, with the most positional arguments they may take (none of
# these writes through a later one: sum(axis, dtype, out) is allowed one, the axis)
_PURE_METHODS = {"copy": 0, "item": 1, "ravel": 0, "flatten": 0, "sum": 1, "mean": 1, "max": 1, "min": 1,
                 "prod": 1, "std": 1, "var": 1, "any": 1, "all": 1, "argmax": 1, "argmin": 1,
                 "reshape": 8, "transpose": 8, "astype": 1}
# numpy functions that may return a view of their argument (their result may alias an input)
_NP_VIEWS = frozenset({"asarray", "reshape", "ravel", "transpose", "squeeze", "atleast_1d", "atleast_2d",
                       "expand_dims", "swapaxes", "moveaxis", "diagonal", "real", "imag"})
# builtins whose result is a new scalar (or range), never a view
_SCALAR_BUILTINS = frozenset({"abs", "min", "max", "float", "int", "bool", "len", "sum", "round", "pow",
                              "range"})


def _max_safe_positional(name: str) -> int | None:
    """How many positional arguments ``np.<name>`` takes before one that may be written into
    (a ufunc's ``out``, a function's ``out`` or ``copy``); None when that cannot be told."""
    fn = getattr(np, name, None)
    if isinstance(fn, np.ufunc):
        return fn.nin
    if not callable(fn):
        return None
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    for i, p in enumerate(params):
        if p.name in ("out", "copy") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return i
    return len(params)


def _call_may_write(node: ast.Call) -> bool:
    if any(k.arg is None or k.arg in _WRITING_KEYWORDS for k in node.keywords):
        return True
    func = node.func
    if isinstance(func, ast.Attribute):
        value = func.value
        if isinstance(value, ast.Name) and value.id == "np":
            limit = _max_safe_positional(func.attr)
            return limit is None or len(node.args) > limit
        if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) and value.value.id == "np":
            return False  # np.linalg.norm/det/inv/solve: pure (the allowlist admits nothing else)
        if isinstance(value, ast.Name) and value.id == "math":
            return False  # math.*: scalar functions
        return func.attr not in _PURE_METHODS or len(node.args) > _PURE_METHODS[func.attr]
    return False  # a builtin or a helper: its own body is checked too


def _may_alias(expr: ast.AST | None, aliases: set[str]) -> bool:
    """Whether the value of ``expr`` might share memory with a name in ``aliases`` (or an input)."""
    if isinstance(expr, ast.Name):
        return expr.id in aliases
    if isinstance(expr, (ast.Subscript, ast.Attribute, ast.Tuple, ast.List, ast.Starred)):
        return True  # a view, an attribute (.T, .real), or a container holding one
    if isinstance(expr, ast.IfExp):
        return _may_alias(expr.body, aliases) or _may_alias(expr.orelse, aliases)
    if isinstance(expr, ast.BoolOp):
        return any(_may_alias(v, aliases) for v in expr.values)
    if isinstance(expr, ast.Call):
        func = expr.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np":
            return func.attr in _NP_VIEWS
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math":
            return False
        return not isinstance(func, ast.Name) or func.id not in _SCALAR_BUILTINS  # helpers, methods
    return not isinstance(expr, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Compare))


def _aliases(fn: ast.FunctionDef, inputs: set[str]) -> set[str]:
    """Names of ``fn`` that might alias one of ``inputs`` (to a fixpoint over its bindings)."""
    bindings: list[tuple[ast.AST, ast.AST | None]] = []  # (target, value; None = unknown)
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign):
            bindings += [(t, node.value) for t in node.targets]
        elif isinstance(node, ast.For):
            is_range = isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name) \
                and node.iter.func.id == "range"
            bindings.append((node.target, ast.Constant(0) if is_range else None))
        elif isinstance(node, ast.comprehension):
            bindings.append((node.target, None))
    aliases = set(inputs)
    changed = True
    while changed:
        changed = False
        for target, value in bindings:
            names = [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
            unpacked = not isinstance(target, ast.Name)
            if any(n not in aliases for n in names) and (value is None or unpacked or _may_alias(value, aliases)):
                aliases.update(names)
                changed = True
    return aliases


def may_write_inputs(tree: ast.Module, entry: str, vector_params: set[str]) -> bool:
    """Whether some statement of ``tree`` (a validated program) could write into an input array.

    Args:
        tree: the validated module (function definitions only).
        entry: the reward function's name; its parameters in ``vector_params`` are arrays, the
            others scalars (passed by value). Every parameter of a helper may be an array.
        vector_params: the entry's array parameters.

    Returns:
        False only when proven that nothing is written into an input (see the module docstring).
    """
    for node in ast.walk(tree):
        if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            return True
        if isinstance(node, ast.Call) and _call_may_write(node):
            return True
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            return True
        params = {a.arg for a in fn.args.args}
        aliases = _aliases(fn, params & vector_params if fn.name == entry else params)
        for node in ast.walk(fn):
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id in aliases:
                return True
    return False


__all__ = ["may_write_inputs"]
