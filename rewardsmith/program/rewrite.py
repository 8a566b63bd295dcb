"""Rewrite a validated reward program into a Numba-friendly form.

``return total, {"a": x, "b": y}`` becomes ``return (total, (x, y))`` with the component names
recorded once, in the order of the first return. A components dict built in a local variable
(``parts = {...}; parts["c"] = z; return total, parts``) is split into one local per key. Line
numbers are kept, so compile errors point at the user's own lines.
"""

from __future__ import annotations

import ast
import copy

from rewardsmith.errors import RewardProgramError
from rewardsmith.program.validate import ValidatedProgram


def _err(message: str, node: ast.AST | None = None) -> RewardProgramError:
    return RewardProgramError("validate", message, getattr(node, "lineno", None))


class _SplitDict(ast.NodeTransformer):
    """Turn a local components dict ``name`` into one local per literal key."""

    def __init__(self, name: str, keys: list[str]) -> None:
        self.name = name
        self.keys = keys

    def local(self, key: str) -> str:
        return f"_rs_{self.name}_{self.keys.index(key)}"

    def _key(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == self.name:
            sl = node.slice
            if isinstance(sl, ast.Constant) and isinstance(sl.value, str):
                return sl.value
            raise _err(f"components dict {self.name!r} may only be indexed with string literals", node)
        return None

    def visit_Assign(self, node: ast.Assign) -> ast.AST | list[ast.AST]:
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and node.targets[0].id == self.name:
            value = node.value
            if not isinstance(value, ast.Dict):
                raise _err(f"components dict {self.name!r} must be assigned a dict literal", node)
            given = {k.value: v for k, v in zip(value.keys, value.values)}  # type: ignore[union-attr]
            out = []
            for key in self.keys:
                rhs = self.visit(given[key]) if key in given else ast.Constant(0.0)
                out.append(ast.copy_location(ast.Assign([ast.Name(self.local(key), ast.Store())], rhs), node))
            return out
        self.generic_visit(node)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        value = node.value
        if isinstance(value, ast.Tuple) and len(value.elts) == 2 and isinstance(value.elts[1], ast.Name) \
                and value.elts[1].id == self.name:
            value.elts[0] = self.visit(value.elts[0])
            value.elts[1] = ast.Dict([ast.Constant(k) for k in self.keys],
                                     [ast.Name(self.local(k), ast.Load()) for k in self.keys])
            return node
        self.generic_visit(node)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        key = self._key(node)
        if key is not None:
            return ast.copy_location(ast.Name(self.local(key), type(node.ctx)()), node)
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == self.name:
            raise _err(f"components dict {self.name!r} may only be filled with literal keys and returned "
                       "(no .values(), iteration or passing it around)", node)
        return node


def _dict_locals(fn: ast.FunctionDef) -> dict[str, list[str]]:
    """Locals assigned a dict literal, with every literal key they receive (in order)."""
    found: dict[str, list[str]] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and isinstance(node.value, ast.Dict):
            keys = found.setdefault(node.targets[0].id, [])
            keys.extend(k.value for k in node.value.keys if k.value not in keys)  # type: ignore[union-attr]
    for node in ast.walk(fn):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AugAssign) else []
        for t in targets:
            if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in found \
                    and isinstance(t.slice, ast.Constant) and isinstance(t.slice.value, str) \
                    and t.slice.value not in found[t.value.id]:
                found[t.value.id].append(t.slice.value)
    return found


def rewrite(program: ValidatedProgram) -> tuple[ast.Module, list[str]]:
    """Return the rewritten module and the component names.

    Raises:
        RewardProgramError: when a return is not ``(total, {name: value, ...})``.
    """
    tree = copy.deepcopy(program.tree)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == program.entry)
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return)]
    if not returns:
        raise _err(f"{program.entry}() has no return statement; it must return (total, {{name: value}})", fn)
    dict_locals = _dict_locals(fn)
    returned_dicts = set()
    for ret in returns:
        value = ret.value
        if not (isinstance(value, ast.Tuple) and len(value.elts) == 2):
            got = "nothing" if value is None else f"`{ast.unparse(value)[:50]}`"
            raise _err(f"{program.entry}() must return (total, {{name: value, ...}}), but returns {got}", ret)
        comp = value.elts[1]
        if isinstance(comp, ast.Name) and comp.id in dict_locals:
            returned_dicts.add(comp.id)
        elif not isinstance(comp, ast.Dict):
            raise _err(f"the second returned value must be a dict of named components, got "
                       f"`{ast.unparse(comp)[:50]}`", ret)
    for name in sorted(returned_dicts):
        _SplitDict(name, dict_locals[name]).visit(fn)
    names: list[str] | None = None
    first_line = 0
    # source order (ast.walk is breadth-first): the first return written fixes the column order
    for ret in sorted((n for n in ast.walk(fn) if isinstance(n, ast.Return)),
                      key=lambda n: (n.lineno, n.col_offset)):
        total, comp = ret.value.elts  # type: ignore[union-attr]
        keys = [k.value for k in comp.keys]  # type: ignore[union-attr]
        values = comp.values  # type: ignore[union-attr]
        if len(set(keys)) != len(keys):
            raise _err("a component name appears twice in the returned dict", ret)
        if names is None:
            names, first_line = keys, ret.lineno
        elif set(keys) != set(names):
            raise _err(f"every return must give the same components: line {first_line} gives "
                       f"{sorted(names)}, this one gives {sorted(keys)}", ret)
        by_key = dict(zip(keys, values))
        ret.value = ast.Tuple([total, ast.Tuple([by_key[k] for k in names], ast.Load())], ast.Load())
    ast.fix_missing_locations(tree)
    return tree, names or []
