"""Fuse ``np.sum`` / ``np.mean`` of an elementwise expression into a loop: no temporary array.

``ctrl = 0.001 * np.sum(action * action)`` allocates ``action * action`` on every call, which
costs more than the rest of a typical reward program. When the expression is purely elementwise
over the reward function's own 1-D vector parameters (all of one length, never rebound), scalar
parameters and numeric constants, the call is replaced by a call to a generated helper::

    def _rs_fused0(action):
        _rs_acc = 0.0
        for _rs_k in range(action.shape[0]):
            _rs_acc += action[_rs_k] * action[_rs_k]
        return _rs_acc

numba's own ``np.sum`` adds the elements in the same order from 0.0 (and ``np.mean`` divides that
by the size), so the result is the same, bit for bit. Anything else is left alone.
"""

from __future__ import annotations

import ast
import copy

_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div)
_ELEMENTWISE_NP = frozenset({"abs", "absolute", "fabs", "square"})
_REDUCTIONS = frozenset({"sum", "mean"})


class _Fuser(ast.NodeTransformer):
    def __init__(self, vectors: dict[str, int], scalars: set[str]) -> None:
        self.vectors, self.scalars = vectors, scalars
        self.helpers: list[ast.FunctionDef] = []

    def _leaves(self, node: ast.AST, found: list[str]) -> bool:
        """Whether ``node`` is elementwise; collects its vector leaves into ``found``."""
        if isinstance(node, ast.Name):
            if node.id in self.vectors or node.id in self.scalars:
                if node.id not in found:
                    found.append(node.id)
                return True
            return False
        if isinstance(node, ast.Constant):
            return type(node.value) in (int, float)
        if isinstance(node, ast.BinOp):
            return isinstance(node.op, _OPS) and self._leaves(node.left, found) and self._leaves(node.right, found)
        if isinstance(node, ast.UnaryOp):
            return isinstance(node.op, (ast.USub, ast.UAdd)) and self._leaves(node.operand, found)
        if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
            f = node.func
            is_np = isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "np" \
                and f.attr in _ELEMENTWISE_NP
            is_abs = isinstance(f, ast.Name) and f.id == "abs"
            return (is_np or is_abs) and self._leaves(node.args[0], found)
        return False

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        f = node.func
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "np"
                and f.attr in _REDUCTIONS and len(node.args) == 1 and not node.keywords):
            return node
        leaves: list[str] = []
        if not self._leaves(node.args[0], leaves):
            return node
        vectors = [n for n in leaves if n in self.vectors]
        if not vectors or len({self.vectors[n] for n in vectors}) != 1:
            return node
        name = f"_rs_fused{len(self.helpers)}"
        self.helpers.append(self._helper(name, leaves, vectors, node.args[0], f.attr == "mean", node))
        call = ast.Call(ast.Name(name, ast.Load()), [ast.Name(n, ast.Load()) for n in leaves], [])
        return ast.copy_location(call, node)

    def _helper(self, name: str, leaves: list[str], vectors: list[str], expr: ast.AST, mean: bool,
                where: ast.AST) -> ast.FunctionDef:
        body = copy.deepcopy(expr)
        index = ast.Name("_rs_k", ast.Load())
        for node in ast.walk(body):  # vector leaves -> element _rs_k (children before replacement)
            for field, value in ast.iter_fields(node):
                if isinstance(value, ast.Name) and value.id in self.vectors:
                    setattr(node, field, ast.Subscript(value, index, ast.Load()))
                elif isinstance(value, list):
                    value[:] = [ast.Subscript(v, index, ast.Load())
                                if isinstance(v, ast.Name) and v.id in self.vectors else v for v in value]
        if isinstance(body, ast.Name):  # np.sum(action)
            body = ast.Subscript(body, index, ast.Load())
        first = vectors[0]
        size = f"{first}.shape[0]"
        lines = [f"def {name}({', '.join(leaves)}):"]
        lines += [f"    if {v}.shape[0] != {size}:\n        raise ValueError('operands could not be broadcast "
                  "together')" for v in vectors[1:]]
        lines += ["    _rs_acc = 0.0", f"    for _rs_k in range({size}):", "        _rs_acc += 0.0",
                  f"    return _rs_acc{f' / {size}' if mean else ''}"]
        fn = ast.parse("\n".join(lines)).body[0]
        loop = next(n for n in fn.body if isinstance(n, ast.For))
        loop.body[0].value = body  # type: ignore[attr-defined]
        for node in ast.walk(fn):
            ast.copy_location(node, where)
        ast.fix_missing_locations(fn)
        return fn  # type: ignore[return-value]


def fuse_reductions(tree: ast.Module, entry: str, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Fuse the reductions of ``entry`` in ``tree`` (in place); returns the generated helpers' names.

    Args:
        tree: the rewritten module.
        entry: the reward function's name.
        shapes: the shape of each of its parameters (``()`` for a scalar).
    """
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry)
    rebound = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    params = [a.arg for a in fn.args.args if a.arg not in rebound]
    vectors = {p: shapes[p][0] for p in params if len(shapes.get(p, (0, 0))) == 1}
    scalars = {p for p in params if shapes.get(p) == ()}
    fuser = _Fuser(vectors, scalars)
    fuser.visit(fn)
    tree.body.extend(fuser.helpers)
    ast.fix_missing_locations(tree)
    return [h.name for h in fuser.helpers]


__all__ = ["fuse_reductions"]
