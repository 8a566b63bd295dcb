"""Stage 1 of checking a reward program: parse, static allowlist, signature.

The checks are an allowlist, not a denylist: a name a program reads must be one of its
parameters, a local it assigned, a helper function it defined, ``np``, ``math``, or a small set
of harmless builtins; ``np.*`` and ``math.*`` attributes must be on a list of pure numeric
functions. Everything that could run code at definition time (module-level statements, default
arguments, decorators, annotations) is rejected or stripped before the program ever executes.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field

from rewardsmith.errors import RewardProgramError
from rewardsmith.tasks import FUNCTION_NAME, TaskSpec

MAX_SOURCE_BYTES = 16_384
MAX_EXPONENT = 64

SAFE_BUILTINS = frozenset({
    "abs", "min", "max", "float", "int", "bool", "range", "len", "sum", "round", "enumerate", "zip", "pow",
})
NP_ALLOWED = frozenset({
    "abs", "absolute", "all", "any", "arccos", "arcsin", "arctan", "arctan2", "argmax", "argmin", "array",
    "asarray", "clip", "copysign", "cos", "cosh", "cross", "cumsum", "deg2rad", "diff", "dot", "e", "exp",
    "expm1", "fabs", "float32", "float64", "floor", "ceil", "hypot", "inf", "int32", "int64", "isfinite",
    "isinf", "isnan", "log", "log10", "log1p", "log2", "logical_and", "logical_not", "logical_or", "max",
    "maximum", "mean", "median", "min", "minimum", "multiply", "nan", "nan_to_num", "ones", "ones_like",
    "pi", "power", "prod", "rad2deg", "round", "sign", "sin", "sinh", "sqrt", "square", "std", "sum", "tan",
    "tanh", "var", "where", "zeros", "zeros_like", "empty", "full", "linalg", "add", "subtract", "divide",
    "exp2", "radians", "degrees", "fmin", "fmax", "argsort", "sort", "interp", "trace", "outer", "concatenate",
    "stack", "vstack", "hstack", "arange", "linspace", "reshape", "ravel", "transpose", "heaviside", "float_",
    "bool_", "signbit", "average", "cbrt", "reciprocal", "negative", "positive", "remainder", "mod", "fmod",
    "greater", "less", "equal", "not_equal", "greater_equal", "less_equal",
})
NP_LINALG_ALLOWED = frozenset({"norm", "det", "inv", "solve"})
MATH_ALLOWED = frozenset({
    "acos", "asin", "atan", "atan2", "ceil", "copysign", "cos", "cosh", "degrees", "e", "erf", "exp", "expm1",
    "fabs", "floor", "fmod", "hypot", "inf", "isclose", "isfinite", "isinf", "isnan", "log", "log10", "log1p",
    "log2", "nan", "pi", "pow", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "tau", "trunc",
})
ARRAY_ATTR_DENIED = frozenset({
    "ctypes", "tofile", "dump", "dumps", "data", "base", "setflags", "flags", "resize", "itemset", "byteswap",
    "tobytes", "tostring", "view", "put", "fill", "sort", "partition", "newbyteorder", "getfield", "setfield",
})

_WHY = {
    "print": "reward programs may not do I/O (print)",
    "input": "reward programs may not do I/O (input)",
    "open": "reward programs may not do file I/O (open)",
    "eval": "reward programs may not run dynamic code (eval)",
    "exec": "reward programs may not run dynamic code (exec)",
    "compile": "reward programs may not run dynamic code (compile)",
    "globals": "reward programs may not use globals()",
    "locals": "reward programs may not use locals()",
    "vars": "reward programs may not use vars()",
    "getattr": "reward programs may not use reflection (getattr)",
    "setattr": "reward programs may not use reflection (setattr)",
    "delattr": "reward programs may not use reflection (delattr)",
    "type": "reward programs may not use reflection (type)",
    "exit": "reward programs may not exit the process",
    "quit": "reward programs may not exit the process",
    "breakpoint": "reward programs may not start a debugger",
    "numba": "reward programs may not use numba directly (objmode escapes the compiler)",
    "os": "reward programs may not use the os module", "sys": "reward programs may not use the sys module",
    "random": "reward programs must be deterministic (no random)",
}

_STATEMENTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.If, ast.For, ast.Expr, ast.Pass,
               ast.Break, ast.Continue)
_FORBIDDEN_STATEMENTS = {
    ast.While: "while loops are not allowed (use a bounded `for i in range(n)` loop)",
    ast.With: "`with` blocks are not allowed",
    ast.Try: "try/except is not allowed", ast.Raise: "raise is not allowed (return a value instead)",
    ast.Assert: "assert is not allowed (return a value instead)",
    ast.Global: "global/nonlocal are not allowed: reward programs may not keep state between calls",
    ast.Nonlocal: "global/nonlocal are not allowed: reward programs may not keep state between calls",
    ast.Delete: "del is not allowed", ast.Import: "imports inside functions are not allowed",
    ast.ImportFrom: "imports inside functions are not allowed",
    ast.ClassDef: "classes are not allowed", ast.FunctionDef: "nested functions are not allowed",
    ast.AsyncFunctionDef: "async functions are not allowed", ast.AsyncFor: "async code is not allowed",
    ast.AsyncWith: "async code is not allowed",
}
_FORBIDDEN_EXPRESSIONS = {
    ast.Lambda: "lambda is not allowed (define a helper function)", ast.Await: "await is not allowed",
    ast.Yield: "generators are not allowed", ast.YieldFrom: "generators are not allowed",
    ast.JoinedStr: "f-strings are not allowed", ast.Set: "set literals are not allowed",
    ast.SetComp: "set comprehensions are not allowed", ast.DictComp: "dict comprehensions are not allowed",
    ast.NamedExpr: "the walrus operator := is not allowed", ast.Starred: "star-unpacking is not allowed",
}
if hasattr(ast, "Match"):
    _FORBIDDEN_STATEMENTS[ast.Match] = "match statements are not allowed"


@dataclass
class ValidatedProgram:
    """A program that passed stage 1.

    Attributes:
        source: the source as given.
        tree: the parsed module with annotations and docstrings stripped.
        entry: name of the reward function (``compute_reward``).
        params: its parameter names (a subset of the task's variables, in the program's order).
        helpers: names of the helper functions.
        notes: non-fatal remarks (e.g. tolerated imports).
    """

    source: str
    tree: ast.Module
    entry: str
    params: list[str]
    helpers: list[str]
    notes: list[str] = field(default_factory=list)


def _fail(message: str, node: ast.AST | None = None) -> RewardProgramError:
    return RewardProgramError("validate", message, getattr(node, "lineno", None))


def _check_module(tree: ast.Module) -> tuple[list[ast.FunctionDef], list[str]]:
    functions: list[ast.FunctionDef] = []
    notes: list[str] = []
    body = []
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Import):
            names = [(a.name, a.asname) for a in node.names]
            if all(n in (("numpy", "np"), ("math", None)) for n in names):
                notes.append(f"line {node.lineno}: tolerated `{ast.unparse(node)}` (np and math are provided)")
                continue
            raise _fail(f"`{ast.unparse(node)}`: only `import numpy as np` and `import math` are allowed; "
                        "other modules are not available to reward programs", node)
        if isinstance(node, ast.ImportFrom):
            raise _fail(f"`{ast.unparse(node)}`: only `import numpy as np` and `import math` are allowed", node)
        if isinstance(node, ast.FunctionDef):
            functions.append(node)
            body.append(node)
            continue
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            continue  # module docstring
        if isinstance(node, ast.ClassDef):
            raise _fail("classes are not allowed; write plain functions", node)
        if isinstance(node, ast.AsyncFunctionDef):
            raise _fail("async functions are not allowed", node)
        raise _fail("module-level code is not allowed: only function definitions and "
                    f"`import numpy as np` / `import math` (found `{ast.unparse(node)[:60]}`)", node)
    tree.body = body
    return functions, notes


def _check_function(fn: ast.FunctionDef, helpers: set[str]) -> None:
    if fn.decorator_list:
        raise _fail(f"function {fn.name!r} has a decorator; decorators are not allowed", fn)
    a = fn.args
    if a.defaults or any(d is not None for d in a.kw_defaults):
        raise _fail(f"function {fn.name!r} has default arguments; defaults are not allowed", fn)
    if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs:
        raise _fail(f"function {fn.name!r} must take plain positional parameters only "
                    "(no *args, **kwargs, keyword-only or positional-only parameters)", fn)
    if fn.name.startswith("_"):
        raise _fail(f"function name {fn.name!r} may not start with an underscore", fn)
    params = {arg.arg for arg in a.args}
    for arg in a.args:
        if arg.arg.startswith("_"):
            raise _fail(f"parameter name {arg.arg!r} may not start with an underscore", fn)
    assigned = set(params)
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned.add(node.id)
    known = assigned | helpers | SAFE_BUILTINS | {"np", "math"}
    for stmt in fn.body:
        _check_statement(stmt, known)
    # A helper may only be called by name: used as a value (aliased, passed as an argument) it
    # would hide recursion from _check_recursion, and deep native recursion crashes the process.
    callees = {id(n.func) for n in ast.walk(fn) if isinstance(n, ast.Call)}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id in helpers and node.id not in assigned \
                and id(node) not in callees:
            raise _fail(f"function {node.id!r} may only be called, not used as a value "
                        "(no aliasing or passing functions around)", node)


def _check_statement(stmt: ast.stmt, known: set[str]) -> None:
    for node in ast.walk(stmt):
        kind = type(node)
        if kind in _FORBIDDEN_STATEMENTS:
            raise _fail(_FORBIDDEN_STATEMENTS[kind], node)
        if isinstance(node, ast.stmt) and not isinstance(node, _STATEMENTS):
            raise _fail(f"statement `{type(node).__name__}` is not allowed", node)
        if kind in _FORBIDDEN_EXPRESSIONS:
            raise _fail(_FORBIDDEN_EXPRESSIONS[kind], node)
        if isinstance(node, ast.Name):
            _check_name(node, known)
        elif isinstance(node, ast.Attribute):
            _check_attribute(node)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            _check_power(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (bytes, complex)):
            raise _fail(f"constant {node.value!r} is not allowed (numbers and strings only)", node)
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    raise _fail("component dict keys must be string literals", node)


def _check_name(node: ast.Name, known: set[str]) -> None:
    name = node.id
    if name.startswith("_"):
        raise _fail(f"name {name!r}: names starting with an underscore are not allowed", node)
    if name in _WHY and name not in known - SAFE_BUILTINS - {"np", "math"}:
        raise _fail(_WHY[name], node)
    if isinstance(node.ctx, ast.Load) and name not in known:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _fail(f"name {name!r} is not defined or not allowed{hint} (reward programs may use their "
                    "parameters, their own locals and helpers, np, math and simple builtins)", node)


def _attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    if isinstance(value, ast.Name):
        parts.append(value.id)
        return parts[::-1]
    return None


def _check_attribute(node: ast.Attribute) -> None:
    if node.attr.startswith("_"):
        raise _fail(f"attribute {node.attr!r}: underscore and dunder attributes are not allowed", node)
    chain = _attribute_chain(node)
    if chain and chain[0] == "np":
        if len(chain) >= 2 and chain[1] == "random":
            raise _fail("np.random is not allowed: reward programs must be deterministic", node)
        if len(chain) >= 2 and chain[1] not in NP_ALLOWED:
            why = "file I/O" if chain[1] in ("load", "save", "savez", "loadtxt", "savetxt", "fromfile",
                                             "memmap", "genfromtxt") else "not on the allowlist"
            raise _fail(f"np.{chain[1]} is not allowed ({why}); numeric numpy functions such as np.sum, "
                        "np.clip, np.exp, np.linalg.norm are", node)
        if len(chain) >= 3 and chain[1] == "linalg" and chain[2] not in NP_LINALG_ALLOWED:
            raise _fail(f"np.linalg.{chain[2]} is not allowed (allowed: {', '.join(sorted(NP_LINALG_ALLOWED))})",
                        node)
        return
    if chain and chain[0] == "math":
        if len(chain) >= 2 and chain[1] not in MATH_ALLOWED:
            raise _fail(f"math.{chain[1]} is not allowed (numeric math functions such as math.exp are)", node)
        return
    if node.attr in ARRAY_ATTR_DENIED:
        raise _fail(f"attribute .{node.attr} is not allowed in reward programs", node)


def _check_power(node: ast.BinOp) -> None:
    right = node.right
    if isinstance(right, ast.UnaryOp) and isinstance(right.operand, ast.Constant):
        right = right.operand
    if isinstance(right, ast.BinOp):
        if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(right)):
            raise _fail("nested powers like 2**10**8 are not allowed", node)
    if isinstance(right, ast.Constant) and isinstance(right.value, (int, float)) \
            and abs(right.value) > MAX_EXPONENT:
        raise _fail(f"exponent {right.value!r} is too large (at most {MAX_EXPONENT})", node)


def _check_recursion(functions: dict[str, ast.FunctionDef]) -> None:
    calls: dict[str, set[str]] = {}
    for name, fn in functions.items():
        calls[name] = {n.func.id for n in ast.walk(fn)
                       if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions}
    for start in functions:
        stack, seen = [start], set()
        while stack:
            for callee in calls[stack.pop()]:
                if callee == start:
                    raise _fail(f"function {start!r} is recursive; recursion is not allowed (use a loop)",
                                functions[start])
                if callee not in seen:
                    seen.add(callee)
                    stack.append(callee)


class _StripAnnotations(ast.NodeTransformer):
    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        for arg in node.args.args:
            arg.annotation = None
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str) and len(node.body) > 1:
            node.body = node.body[1:]
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is None:
            return ast.Pass()
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)


def validate_source(source: str, task: TaskSpec) -> ValidatedProgram:
    """Parse and statically check ``source`` against the allowlist and ``task``'s signature.

    Raises:
        RewardProgramError: with stage ``parse``, ``validate`` or ``signature``.
    """
    if not isinstance(source, str):
        raise RewardProgramError("parse", f"the program must be a string, got {type(source).__name__}")
    size = len(source.encode())
    if size > MAX_SOURCE_BYTES:
        raise _fail(f"the program is too large: {size} bytes; the limit is {MAX_SOURCE_BYTES} bytes")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise RewardProgramError("parse", f"syntax error: {exc.msg}", exc.lineno) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise RewardProgramError("parse", f"cannot parse the program: {exc}") from None
    tree = _StripAnnotations().visit(tree)
    functions, notes = _check_module(tree)
    if not functions:
        raise _fail(f"no function found; define `{task.signature}`")
    by_name: dict[str, ast.FunctionDef] = {}
    for fn in functions:
        if fn.name in by_name:
            raise _fail(f"function {fn.name!r} is defined twice", fn)
        if fn.name in SAFE_BUILTINS or fn.name in ("np", "math"):
            raise _fail(f"function name {fn.name!r} shadows a builtin", fn)
        by_name[fn.name] = fn
    for fn in functions:
        _check_function(fn, set(by_name))
    _check_recursion(by_name)
    entry = _find_entry(by_name, task)
    params = _check_signature(by_name[entry], task)
    ast.fix_missing_locations(tree)
    return ValidatedProgram(source, tree, entry, params, [n for n in by_name if n != entry], notes)


def _find_entry(functions: dict[str, ast.FunctionDef], task: TaskSpec) -> str:
    if FUNCTION_NAME in functions:
        return FUNCTION_NAME
    called = {n.func.id for fn in functions.values() for n in ast.walk(fn)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    roots = [name for name in functions if name not in called]
    if len(roots) == 1:
        return roots[0]
    raise RewardProgramError("signature", f"no function named {FUNCTION_NAME!r}; found {', '.join(functions)}. "
                             f"Define `{task.signature}`")


def _check_signature(fn: ast.FunctionDef, task: TaskSpec) -> list[str]:
    params = [a.arg for a in fn.args.args]
    if not params:
        raise RewardProgramError("signature", f"{fn.name}() takes no parameters; expected some of "
                                 f"{', '.join(task.variable_names)}", fn.lineno)
    for p in params:
        if p not in task.variable_names:
            close = difflib.get_close_matches(p, task.variable_names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RewardProgramError(
                "signature", f"parameter {p!r} is not a variable of task {task.name!r}.{hint} "
                f"The signature is `{task.signature}` (any subset of these parameters, by name)", fn.lineno)
    return params
