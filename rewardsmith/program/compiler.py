"""Stage 2: compile a rewritten reward program with ``numba.njit``, with a content-addressed cache.

numba's ``cache=True`` needs a real source file, so each program's source is written once to
``<cache>/rs_<hash>.py`` (the hash covers the source, the task's state layout and the compiler
versions), loaded as a module registered in ``sys.modules``, and its functions compiled there:
numba then stores machine code beside it, and the same program is never compiled twice, across
processes included. An in-process memo skips even the cache load.

Every function is compiled with ``boundscheck=True`` (an out-of-bounds index raises instead of
reading garbage or crashing the host) and ``error_model="numpy"`` (x/0 gives inf, which the runtime
guard then replaces, instead of raising).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
import types as pytypes
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.errors import RewardProgramError
from rewardsmith.program.rewrite import rewrite
from rewardsmith.program.validate import ValidatedProgram
from rewardsmith.tasks import TaskSpec

COMPILER_VERSION = "2"
NJIT_OPTIONS = {"cache": True, "boundscheck": True, "error_model": "numpy", "nogil": True}
_MEMO: dict[str, Any] = {}
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where compiled programs live (``$REWARDSMITH_CACHE`` or ``~/.cache/rewardsmith``), mode 0700."""
    root = Path(os.environ.get("REWARDSMITH_CACHE") or Path.home() / ".cache" / "rewardsmith") / "programs"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def program_key(program: ValidatedProgram, task: TaskSpec) -> str:
    """Content hash of everything that determines the compiled code."""
    import numba

    layout = [(v.name, v.shape) for v in task.variables]
    blob = repr((program.source, program.entry, program.params, layout, COMPILER_VERSION,
                 numba.__version__, np.__version__, sys.version_info[:2]))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _kernel_source(entry: str, args: list[str], n_components: int, first_line: int) -> str:
    pad = "\n" * (first_line - 1)
    comps = "".join(f"            comps[i, {j}] = c[{j}]\n" for j in range(n_components))
    return pad + (
        "def _rs_batch(S, total, comps, counters):\n"
        "    nbad = 0\n"
        "    nerr = 0\n"
        "    R = np.empty(S.shape[1])\n"
        "    for i in range(S.shape[0]):\n"
        "        R[:] = S[i]\n"
        "        try:\n"
        f"            t, c = {entry}({', '.join(args)})\n"
        "            total[i] = t\n"
        f"{comps}"
        "        except Exception:\n"
        "            total[i] = np.nan\n"
        "            comps[i, :] = np.nan\n"
        "            nerr += 1\n"
        "        if not np.isfinite(total[i]):\n"
        "            total[i] = 0.0\n"
        "            nbad += 1\n"
        "        for j in range(comps.shape[1]):\n"
        "            if not np.isfinite(comps[i, j]):\n"
        "                comps[i, j] = 0.0\n"
        "    counters[0] += nbad\n"
        "    counters[1] += nerr\n"
    )


def _numba_message(exc: Exception, path: str, max_line: int | None = None) -> tuple[str, int | None]:
    """One readable line (and the user's line number) out of a numba error."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    line = None
    # numba may print the file relative to the working directory: match on the (hashed) file name.
    # The innermost frame comes first (a helper's line before the line that called it).
    name = os.path.basename(path)
    for m in re.finditer(r'File "([^"]+)", line (\d+)|at (\S+) \((\d+)\)', text):
        file, num = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        if os.path.basename(file) == name and (max_line is None or int(num) <= max_line):
            line = int(num)
            break
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    skip = ("During:", "File ", "Failed in nopython", "^", "- Resolution failure", "- Of which",
            "This error may have been", "raised from", "<source", "Rejected as the implementation",
            "During: ", "[1]", "[2]", "[0]", "Overload")
    keep = [ln for ln in lines if not ln.startswith(skip)]
    core = keep[0] if keep else lines[0] if lines else type(exc).__name__
    if "No implementation of function" in text or "Invalid use of" in text:
        m = re.search(r"(?:No implementation of function|Invalid use of) (.+?)(?: found for signature:|\n)", text)
        sig = re.search(r">>> (.+)", text)
        core = f"unsupported operation {m.group(1) if m else ''} {('for ' + sig.group(1)) if sig else ''}".strip()
        core = re.sub(r"Function\(<(?:built-in )?function (\w+)(?: at 0x[0-9a-f]+)?>\)", r"\1", core)
    if "NameError" in text or "Untyped global name" in text:
        m = re.search(r"Untyped global name '([^']+)'", text)
        if m:
            core = f"name {m.group(1)!r} cannot be used in a compiled reward program"
    return core[:300], line


def _check_return_type(dispatcher: Any, entry: str) -> int:
    from numba.core import types

    sig = dispatcher.nopython_signatures[0]
    ret = sig.return_type
    if isinstance(ret, types.Optional) or ret == types.none:
        raise RewardProgramError("compile", f"{entry}() returns None on some path; every path must return "
                                 "(total, {name: value})")
    total, comps = ret.types  # the rewrite guarantees a 2-tuple

    def describe(t: Any, what: str) -> None:
        if isinstance(t, types.Boolean):
            raise RewardProgramError("compile", f"{what} is a bool; return a float (e.g. 1.0 if cond else 0.0)")
        if isinstance(t, types.Array):
            raise RewardProgramError("compile", f"{what} is an array ({t.ndim}-d); return a scalar, "
                                     "e.g. np.sum(...) or x[0]")
        if not isinstance(t, (types.Float, types.Integer)):
            raise RewardProgramError("compile", f"{what} has type {t}; it must be a float")

    describe(total, "the total reward")
    for t in getattr(comps, "types", ()):
        describe(t, "a component")
    return len(getattr(comps, "types", ()))


def _load_module(key: str, source: str) -> pytypes.ModuleType:
    name = f"rs_{key}"
    if name in sys.modules:
        return sys.modules[name]
    path = cache_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__file__ = str(path)
    sys.modules[name] = module
    return module


def compile_validated(program: ValidatedProgram, task: TaskSpec) -> CompiledProgram:
    """Rewrite and compile ``program`` for ``task`` (stage 2); cached by content.

    Raises:
        RewardProgramError: stage ``validate`` (bad return form) or ``compile``.
    """
    key = program_key(program, task)
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
    tree, components = rewrite(program)
    import numba

    module = _load_module(key, program.source)
    path = module.__file__
    ns = module.__dict__
    ns.update({"np": np, "math": __import__("math")})
    try:
        exec(compile(tree, path, "exec"), ns)
    except Exception as exc:  # pragma: no cover - validation makes this unreachable
        raise RewardProgramError("compile", f"defining the functions failed: {exc}") from None
    for name in [program.entry, *program.helpers]:
        ns[name] = numba.njit(**NJIT_OPTIONS)(ns[name])
    slices = task.slices()
    args = []
    for p in program.params:
        sl = slices[p]
        # vectors are views of a per-row scratch copy, so a program that writes into its inputs
        # cannot corrupt the caller's states
        args.append(f"S[i, {sl.start}]" if task.variable(p).shape == () else f"R[{sl.start}:{sl.stop}]")
    n_lines = program.source.count("\n") + 2
    kernel_src = _kernel_source(program.entry, args, len(components), n_lines + 1)
    exec(compile(kernel_src, path, "exec"), ns)
    batch = numba.njit(**NJIT_OPTIONS)(ns["_rs_batch"])
    f64, arr1 = numba.float64, numba.types.Array(numba.float64, 1, "C")
    sig = tuple(f64 if task.variable(p).shape == () else arr1 for p in program.params)
    try:
        ns[program.entry].compile(sig)
        n_comp = _check_return_type(ns[program.entry], program.entry)
        if n_comp != len(components):  # pragma: no cover - the rewrite keeps these equal
            raise RewardProgramError("compile", "component count mismatch")
        batch.compile((numba.types.Array(f64, 2, "C"), arr1, numba.types.Array(f64, 2, "C"),
                       numba.types.Array(numba.int64, 1, "C")))
    except RewardProgramError:
        raise
    except Exception as exc:
        message, line = _numba_message(exc, path, program.source.count("\n") + 1)
        raise RewardProgramError("compile", message, line) from None
    compiled = CompiledProgram(key=key, path=path, entry=ns[program.entry], batch=batch,
                               components=components, params=list(program.params))
    with _LOCK:
        _MEMO[key] = compiled
    return compiled


class CompiledProgram:
    """The machine-code side of a reward program.

    Attributes:
        key: the content hash.
        path: the cached source file.
        entry: the numba dispatcher of the reward function (returns ``(total, (c0, c1, ...))``).
        batch: ``batch(S, total, comps, counters)`` over a ``(n, state_size)`` float64 array;
            non-finite values become 0 and are counted in ``counters[0]``, exceptions in ``counters[1]``.
        components: component names, in output column order.
        params: the program's parameters, in its own order.
    """

    def __init__(self, key: str, path: str, entry: Any, batch: Any, components: list[str],
                 params: list[str]) -> None:
        self.key, self.path, self.entry, self.batch = key, path, entry, batch
        self.components, self.params = components, params


def python_function(program: ValidatedProgram) -> Any:
    """The program as plain Python (its original source, returning ``(total, dict)``).

    Used as the reference in equivalence tests and the baseline in benchmarks; the source was
    validated, so executing its definitions runs no user code.
    """
    ns: dict[str, Any] = {"np": np, "math": __import__("math"), "__builtins__": _SAFE_BUILTINS}
    exec(compile(program.tree, "<reward program>", "exec"), ns)
    return ns[program.entry]


_SAFE_BUILTINS = {n: getattr(__import__("builtins"), n) for n in
                  ("abs", "min", "max", "float", "int", "bool", "range", "len", "sum", "round", "enumerate",
                   "zip", "pow")}
