"""Stage 2: compile a rewritten reward program with ``numba.njit``, with a content-addressed cache.

numba's ``cache=True`` needs a real source file, so each program's source is written once to
``<cache>/rs_<hash>.py`` (the hash covers the source, the task's state layout and the compiler
versions), loaded as a module registered in ``sys.modules``, and its functions compiled there:
numba then stores machine code beside it, and the same program is never compiled twice, across
processes included. An in-process memo skips even the cache load. The probe's child compiles
with ``load_only=True``: it loads what the parent cached and, on a miss, compiles in memory, never
writing (its file-size limit is 0). numba's cache goes wherever numba puts it (``NUMBA_CACHE_DIR``
included); the probe passes that setting on, so parent and child look in the same place.

Every function of the program is compiled with ``boundscheck=True`` (an out-of-bounds index
raises instead of reading garbage or crashing the host) and ``error_model="numpy"`` (x/0 gives inf,
which the runtime guard then replaces, instead of raising). Before compiling, ``np.sum``/``np.mean``
of elementwise expressions are fused into loops (:mod:`rewardsmith.program.fuse`). The batch
kernels (:mod:`rewardsmith.program.kernel`) check their shapes once and index without bounds
checks; they copy each row into scratch only for a program that may write into its inputs
(:mod:`rewardsmith.program.effects`). The parallel kernel is compiled on first use (large batches
only, :data:`PARALLEL_MIN_ROWS`), so checking a program never pays for it.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib.util
import os
import re
import sys
import threading
import time
import types as pytypes
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.errors import RewardProgramError, RewardsmithError
from rewardsmith.fsutil import atomic_write_text, cache_root
from rewardsmith.program.effects import may_write_inputs
from rewardsmith.program.fuse import fuse_reductions
from rewardsmith.program.kernel import kernel_source
from rewardsmith.program.rewrite import rewrite
from rewardsmith.program.validate import SAFE_BUILTINS, ValidatedProgram
from rewardsmith.tasks import TaskSpec

COMPILER_VERSION = "4"  # bump whenever the generated code changes: it is part of the cache key
NJIT_OPTIONS = {"cache": True, "boundscheck": True, "error_model": "numpy", "nogil": True}
KERNEL_OPTIONS = dict(NJIT_OPTIONS, boundscheck=False)  # shapes checked once per call instead
PARALLEL_MIN_ROWS = 100_000  # batches this large (and a numba with threads) may use the parallel kernel
_EXPLORE_EVERY = 8  # a large batch in this many runs on the kernel that was slower, to re-measure it
_MEMO: dict[str, Any] = {}
_LOCK = threading.Lock()


class CompileCacheError(RewardsmithError, OSError):
    """The compile cache folder cannot be created (e.g. a read-only home and no ``$REWARDSMITH_CACHE``)."""


def cache_dir() -> Path:
    """Where compiled programs live (``<cache_root()>/programs``), mode 0700.

    Raises:
        CompileCacheError: the folder cannot be created.
    """
    root = cache_root() / "programs"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        hint = "" if os.environ.get("REWARDSMITH_CACHE") else " (the default is under your home folder)"
        raise CompileCacheError(
            f"cannot create the compile cache {root}{hint}: {exc.strerror or exc}; "
            "set REWARDSMITH_CACHE to a writable folder") from None
    return root


def program_key(program: ValidatedProgram, task: TaskSpec) -> str:
    """Content hash of everything that determines the compiled code."""
    import numba

    layout = [(v.name, v.shape) for v in task.variables]
    blob = repr((program.source, program.entry, program.params, layout, COMPILER_VERSION,
                 numba.__version__, np.__version__, sys.version_info[:2]))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


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


def _load_module(key: str, source: str, write: bool = True) -> tuple[pytypes.ModuleType, bool]:
    """The program's module, backed by ``<cache>/rs_<key>.py``; and whether numba may cache beside it.

    With ``write=False`` (the probe) the source file is never written: when it is missing or differs,
    the module gets the same path but numba must compile in memory (its cache is stamped by the file).
    """
    name = f"rs_{key}"
    path = cache_dir() / f"{name}.py"
    try:
        cacheable = path.read_text(encoding="utf-8") == source
    except (OSError, UnicodeDecodeError):
        cacheable = False
    if not cacheable and write:
        try:
            atomic_write_text(path, source)
        except OSError as exc:
            raise CompileCacheError(f"cannot write the compile cache {path}: {exc.strerror or exc}; "
                                    "set REWARDSMITH_CACHE to a writable folder") from None
        cacheable = True
    if name in sys.modules:
        return sys.modules[name], cacheable
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__file__ = str(path)
    sys.modules[name] = module
    return module, cacheable


class _LoadOnlyCache:
    """Wraps a dispatcher's numba cache: loads from it, never saves (a miss compiles in memory)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        return self._inner.load_overload(sig, target_context)

    def save_overload(self, sig: Any, data: Any) -> None:
        return None

    def flush(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _jit(fn: Any, cache: bool, load_only: bool, options: dict[str, Any] | None = None) -> Any:
    """``numba.njit`` with ``options`` (:data:`NJIT_OPTIONS`); with ``load_only``, never writes numba's cache."""
    import numba

    options = dict(options or NJIT_OPTIONS, cache=cache)
    try:
        dispatcher = numba.njit(**options)(fn)
    except RuntimeError:  # numba found no writable place for its cache: compile in memory
        dispatcher = numba.njit(**dict(options, cache=False))(fn)
    if load_only and getattr(dispatcher, "_cache", None) is not None:
        if hasattr(dispatcher._cache, "save_overload"):
            dispatcher._cache = _LoadOnlyCache(dispatcher._cache)
        else:  # pragma: no cover - a numba without the cache interface this relies on
            dispatcher = numba.njit(**dict(options, cache=False))(fn)
    return dispatcher


def compile_validated(program: ValidatedProgram, task: TaskSpec, load_only: bool = False) -> CompiledProgram:
    """Rewrite and compile ``program`` for ``task`` (stage 2); cached by content.

    With ``load_only`` (what the probe's child uses, whose file writes are forbidden) nothing is
    written: machine code comes from the cache when it is there, else is compiled in memory.

    Raises:
        RewardProgramError: stage ``validate`` (bad return form) or ``compile``.
    """
    key = program_key(program, task)
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
    tree, components = rewrite(program)
    shapes = {p: tuple(task.variable(p).shape) for p in program.params}
    fused = fuse_reductions(tree, program.entry, shapes)
    copy_rows = may_write_inputs(tree, program.entry, {p for p in program.params if shapes[p] != ()})
    import numba

    module, cacheable = _load_module(key, program.source, write=not load_only)
    path = module.__file__
    ns = module.__dict__
    ns.update({"np": np, "math": __import__("math"), "numba": numba})
    try:
        exec(compile(tree, path, "exec"), ns)
    except Exception as exc:  # pragma: no cover - validation makes this unreachable
        raise RewardProgramError("compile", f"defining the functions failed: {exc}") from None
    for name in [program.entry, *program.helpers, *fused]:
        ns[name] = _jit(ns[name], cacheable, load_only)
    slices = task.slices()
    # vectors are views of the caller's row, or of a scratch copy of it for a program that may
    # write into its inputs; scalars are passed by value
    args = [f"S[i, {slices[p].start}]" if shapes[p] == () else f"R[{slices[p].start}:{slices[p].stop}]"
            for p in program.params]
    n_lines = program.source.count("\n") + 2
    exec(compile(kernel_source(program.entry, args, len(components), task.state_size, copy_rows, n_lines + 1),
                 path, "exec"), ns)
    batch = _jit(ns["_rs_batch"], cacheable, load_only, KERNEL_OPTIONS)
    sig = tuple(numba.float64 if shapes[p] == () else _array_1d() for p in program.params)
    try:
        ns[program.entry].compile(sig)
        n_comp = _check_return_type(ns[program.entry], program.entry)
        if n_comp != len(components):  # pragma: no cover - the rewrite keeps these equal
            raise RewardProgramError("compile", "component count mismatch")
        batch.compile(_batch_signature())
    except RewardProgramError:
        raise
    except Exception as exc:
        message, line = _numba_message(exc, path, program.source.count("\n") + 1)
        raise RewardProgramError("compile", message, line) from None
    compiled = CompiledProgram(key=key, path=path, entry=ns[program.entry], batch=batch,
                               components=components, params=list(program.params), copies_rows=copy_rows)
    compiled._parallel_source = (ns, cacheable, load_only)
    with _LOCK:
        _MEMO[key] = compiled
    return compiled


def _array_1d() -> Any:
    import numba

    return numba.types.Array(numba.float64, 1, "C")


def _batch_signature() -> tuple[Any, ...]:
    """``(S, total, comps, counters)``: C-contiguous float64 2-d, 1-d, 2-d and int64 1-d."""
    import numba

    f2 = numba.types.Array(numba.float64, 2, "C")
    return f2, _array_1d(), f2, numba.types.Array(numba.int64, 1, "C")


class CompiledProgram:
    """The machine-code side of a reward program.

    Attributes:
        key: the content hash.
        path: the cached source file.
        entry: the numba dispatcher of the reward function (returns ``(total, (c0, c1, ...))``).
        batch: ``batch(S, total, comps, counters)`` over a ``(n, state_size)`` float64 array,
            serial; non-finite values become 0 and are counted in ``counters[0]``, exceptions in
            ``counters[1]`` (a row that raised is counted in both). ValueError on a wrong shape.
        components: component names, in output column order.
        params: the program's parameters, in its own order.
        copies_rows: whether the kernels copy each row first (the program may write into its inputs).
    """

    def __init__(self, key: str, path: str, entry: Any, batch: Any, components: list[str],
                 params: list[str], copies_rows: bool = True) -> None:
        self.key, self.path, self.entry, self.batch = key, path, entry, batch
        self.components, self.params, self.copies_rows = components, params, copies_rows
        self._parallel_source: tuple[dict[str, Any], bool, bool] | None = None  # module dict, ...
        self._parallel: Any = None
        self._speed: dict[bool, float | None] = {False: None, True: None}  # rows/s, last large batch
        self._large_calls = 0

    def parallel_batch(self) -> Any:
        """The parallel kernel (same arguments and results as :attr:`batch`), compiled on first use
        (from numba's cache when it is there); :attr:`batch` when there is none."""
        if self._parallel is None:
            with _LOCK:
                if self._parallel is None and self._parallel_source is not None:
                    ns, cacheable, load_only = self._parallel_source
                    ns["_rs_rows"] = _jit(ns["_rs_rows"], cacheable, load_only, KERNEL_OPTIONS)
                    kernel = _jit(ns["_rs_pbatch"], cacheable, load_only, dict(KERNEL_OPTIONS, parallel=True))
                    kernel.compile(_batch_signature())
                    self._parallel = kernel
        return self._parallel or self.batch

    def run(self, states: np.ndarray, total: np.ndarray, comps: np.ndarray, counters: np.ndarray,
            parallel: bool | None = None) -> None:
        """:attr:`batch` or, with ``parallel=True``, the parallel kernel: the same results either way.

        By default (``None``) a batch of fewer than :data:`PARALLEL_MIN_ROWS` rows, or a numba with
        one thread, runs serially; a larger one runs on whichever kernel was faster per row on
        this program's recent large batches, trying the other every :data:`_EXPLORE_EVERY` calls.
        On a machine whose cores are shared, the parallel kernel can be several times *slower*
        (a thread that waits for a core holds up the whole call), so this is measured, not assumed.
        """
        n = states.shape[0]
        if parallel is not None or n < PARALLEL_MIN_ROWS or _threads() < 2:
            (self.parallel_batch() if parallel else self.batch)(states, total, comps, counters)
            return
        kernels = {False: self.batch, True: self.parallel_batch()}  # compiled before any timing
        self._large_calls += 1
        known = {mode: speed for mode, speed in self._speed.items() if speed is not None}
        if len(known) < 2:
            mode = False in known  # serial first, then parallel
        else:
            mode = max(known, key=known.__getitem__)
            if self._large_calls % _EXPLORE_EVERY == 0:
                mode = not mode
        t = time.perf_counter()
        kernels[mode](states, total, comps, counters)
        self._speed[mode] = n / max(time.perf_counter() - t, 1e-9)


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def python_function(program: ValidatedProgram) -> Any:
    """The program as plain Python (its original source, returning ``(total, dict)``).

    Used as the reference in equivalence tests and the baseline in benchmarks; the source was
    validated, so executing its definitions runs no user code.
    """
    ns: dict[str, Any] = {"np": np, "math": __import__("math"), "__builtins__": _safe_builtins()}
    exec(compile(program.tree, "<reward program>", "exec"), ns)
    return ns[program.entry]


def _safe_builtins() -> dict[str, Any]:
    """The builtins a reward program may use (:data:`~rewardsmith.program.validate.SAFE_BUILTINS`)."""
    return {n: getattr(builtins, n) for n in sorted(SAFE_BUILTINS)}
