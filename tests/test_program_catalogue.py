"""The catalogue of bad reward programs (docs: sandbox-numba.md): each is rejected with a clear
message at the right stage, or neutralised at run time where rejecting it would be wrong.

Static cases run without the probe (milliseconds each); the probe cases start one sandboxed
subprocess each (about 1.5 s), so the crash-type programs (huge allocation, out-of-bounds index,
very long loop) run there and the test process keeps going.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rewardsmith.errors import RewardProgramError
from rewardsmith.program import check_program, load_program, sample_states
from rewardsmith.program.validate import MAX_SOURCE_BYTES
from rewardsmith.tasks import get_task

TASK = "hopper-forward"
H = "def compute_reward(x_velocity, action):\n"
R = "    return x_velocity, {'forward': x_velocity}\n"


@pytest.fixture(scope="module")
def task():
    return get_task(TASK)


@pytest.fixture(scope="module")
def states(task):
    return sample_states(task)


def _big_source() -> str:
    body = "".join(f"    v{i} = x_velocity * {i}.0 + 1.0\n" for i in range(1400))
    src = H + body + R
    assert 40_000 < len(src.encode()) and len(src.encode()) > MAX_SOURCE_BYTES
    return src


_SUBCLASSES = "().__class__.__bases__[0].__subclasses__()"

# (id, source, stage, substring of the error, line or None)
STATIC = [
    ("infinite-loop", H + "    while True:\n        pass\n" + R, "validate", "while loops", 2),
    ("while-condition", H + "    s = 0.0\n    while s < 1.0:\n        s += 0.0\n" + R, "validate", "while loops", 3),
    ("import-top-level", "import os\n" + H + R, "validate", "import", 1),
    ("import-from", "from os import system\n" + H + R, "validate", "import", 1),
    ("import-in-body", H + "    import os\n" + R, "validate", "imports inside functions", 2),
    ("dunder-import", H + "    m = __import__('os')\n" + R, "validate", "underscore", 2),
    ("subclasses-in-body", H + f"    k = {_SUBCLASSES}\n" + R, "validate", "underscore", 2),
    ("subclasses-at-module-level", f"k = {_SUBCLASSES}\n" + H + R, "validate", "module-level code", 1),
    ("subclasses-in-default-argument",
     f"def compute_reward(x_velocity, k={_SUBCLASSES}):\n" + R, "validate", "default arguments", 1),
    ("getattr-class", H + "    c = getattr(x_velocity, '__class__')\n" + R, "validate", "getattr", 2),
    ("open", H + "    f = open('/etc/passwd')\n" + R, "validate", "file I/O (open)", 2),
    ("eval", H + "    y = eval('1 + 1')\n" + R, "validate", "dynamic code (eval)", 2),
    ("exec", H + "    exec('y = 1')\n" + R, "validate", "dynamic code (exec)", 2),
    ("compile", H + "    c = compile('1', 'x', 'eval')\n" + R, "validate", "dynamic code (compile)", 2),
    ("globals", H + "    g = globals()\n" + R, "validate", "globals()", 2),
    ("global-statement", H + "    global counter\n    counter = 1.0\n" + R, "validate", "global/nonlocal", 2),
    ("np-load", H + "    a = np.load('/tmp/x.npy')\n" + R, "validate", "np.load is not allowed (file I/O)", 2),
    ("np-save", H + "    np.save('/tmp/x.npy', action)\n" + R, "validate", "np.save is not allowed (file I/O)", 2),
    ("np-fromfile", H + "    a = np.fromfile('/etc/passwd')\n" + R, "validate", "np.fromfile", 2),
    ("tofile", H + "    action.tofile('/tmp/x.bin')\n" + R, "validate", ".tofile", 2),
    ("ctypes", H + "    p = action.ctypes\n" + R, "validate", ".ctypes", 2),
    ("numba-objmode-with", H + "    with numba.objmode(y='float64'):\n        y = 1.0\n" + R, "validate", "`with`", 2),
    ("numba-objmode-name", H + "    y = numba.objmode\n" + R, "validate", "numba", 2),
    ("returns-bare-array", H + "    return action\n", "validate", "must return (total", 2),
    ("returns-tuple-without-dict", H + "    return (x_velocity, x_velocity)\n", "validate",
     "dict of named components", 2),
    ("returns-none-explicitly", H + "    return None\n", "validate", "returns `None`", 2),
    ("returns-nothing", H + "    y = x_velocity\n", "validate", "no return statement", 1),
    ("returns-array-total", H + "    return action * 2.0, {'forward': x_velocity}\n", "compile",
     "is an array", None),
    ("returns-tuple-total", H + "    return (x_velocity, 1.0), {'forward': x_velocity}\n", "compile",
     "must be a float", None),
    ("returns-str", H + "    return 'good', {'forward': x_velocity}\n", "compile", "must be a float", None),
    ("returns-str-component", H + "    return x_velocity, {'forward': 'good'}\n", "compile",
     "a component has type", None),
    ("returns-none-on-some-path", H + "    if x_velocity > 0.0:\n        return x_velocity, {'forward': x_velocity}\n",
     "compile", "returns None on some path", None),
    ("returns-bool", H + "    return x_velocity > 0.0, {'forward': x_velocity}\n", "compile", "is a bool", None),
    ("wrong-parameter-name", "def compute_reward(velocity):\n    return velocity, {'v': velocity}\n",
     "signature", "not a variable of task 'hopper-forward'", 1),
    ("no-parameters", "def compute_reward():\n    return 1.0, {'one': 1.0}\n", "signature", "takes no parameters", 1),
    ("star-args", "def compute_reward(*args):\n    return 1.0, {'one': 1.0}\n", "validate", "plain positional", 1),
    ("two-entry-candidates", "def reward_a(x_velocity):\n" + R + "def reward_b(x_velocity):\n" + R,
     "signature", "no function named 'compute_reward'", None),
    ("no-function", "# a comment, no code\n", "validate", "no function found", None),
    ("no-function-module-code", "x_velocity = 1.0\n", "validate", "module-level code", 1),
    ("syntax-error", H + "    return x_velocity +, {}\n", "parse", "syntax error", 2),
    ("direct-recursion", "def f(n):\n    return f(n - 1.0) + 1.0\n" + H + "    return f(x_velocity), {'f': 1.0}\n",
     "validate", "recursive", 1),
    ("mutual-recursion",
     "def f(n):\n    return g(n)\ndef g(n):\n    return f(n)\n" + H + "    return f(x_velocity), {'f': 1.0}\n",
     "validate", "recursive", 1),
    # aliasing a helper hid the recursion from the static check; deep native recursion then
    # segfaulted (only the probe stood between it and the host)
    ("recursion-through-alias",
     "def f(n):\n    g = f\n    if n <= 0.0:\n        return 0.0\n    return g(n - 1.0) + 1.0\n"
     + H + "    return f(1e7), {'f': 1.0}\n", "validate", "may only be called, not used as a value", 2),
    ("recursion-through-argument",
     "def f(fn, n):\n    if n <= 0.0:\n        return 0.0\n    return fn(fn, n - 1.0) + 1.0\n"
     "def apply(h, n):\n    return h(h, n)\n" + H + "    return apply(f, 1e7), {'f': 1.0}\n",
     "validate", "may only be called", 8),
    ("np-random", H + "    return np.random.rand(), {'forward': x_velocity}\n", "validate", "np.random", 2),
    ("np-random-seeded", H + "    np.random.seed(0)\n" + R, "validate", "deterministic", 2),
    ("print-spam", H + "    for i in range(100000):\n        print('spam')\n" + R, "validate", "print", 3),
    ("48kb-source", _big_source(), "validate", "too large", None),
    ("power-tower", H + "    y = 2**10**8\n" + R, "validate", "nested powers", 2),
    ("huge-exponent", H + "    y = 2**100000000\n" + R, "validate", "too large", 2),
    ("raise", H + "    raise ValueError('no')\n" + R, "validate", "raise is not allowed", 2),
    ("assert", H + "    assert x_velocity > 0.0\n" + R, "validate", "assert is not allowed", 2),
    ("import-signal", "import signal\n" + H + R, "validate", "import signal", 1),
    ("signal-in-body", H + "    signal.alarm(1)\n" + R, "validate", "'signal' is not defined or not allowed", 2),
    ("import-threading", "import threading\n" + H + R, "validate", "import threading", 1),
    ("import-socket", "import socket\n" + H + R, "validate", "import socket", 1),
    ("os-fork", H + "    os.fork()\n" + R, "validate", "os module", 2),
    ("exit", H + "    exit()\n" + R, "validate", "exit the process", 2),
    ("quit", H + "    quit(0)\n" + R, "validate", "exit the process", 2),
    ("decorator", "@numba.njit\n" + H + R, "validate", "decorator", 2),
    ("decorator-helper", "def deco(f):\n    return f\n@deco\n" + H + R, "validate", "decorator", 4),
    ("default-argument", "def compute_reward(x_velocity, scale=2.0):\n" + R, "validate", "default arguments", 1),
    ("keyword-only-default", "def compute_reward(x_velocity, *, scale=2.0):\n" + R, "validate",
     "default arguments", 1),
    ("lambda", H + "    f = lambda: 1.0\n" + R, "validate", "lambda", 2),
    ("class", "class A:\n    pass\n" + H + R, "validate", "classes", 1),
    ("try-except", H + "    try:\n        y = 1.0\n    except Exception:\n        y = 0.0\n" + R, "validate", "try", 2),
]


@pytest.mark.parametrize(("source", "stage", "needle", "line"), [c[1:] for c in STATIC],
                         ids=[c[0] for c in STATIC])
def test_rejected_before_the_probe(source, stage, needle, line):
    result = check_program(source, TASK, run_probe=False)
    assert result.ok is False
    assert result.program is None
    assert result.stage == stage, result.error
    assert needle.lower() in result.error.lower(), result.error
    assert result.error.startswith(f"{stage} error")
    if line is not None:
        assert result.line == line, result.error
    with pytest.raises(RewardProgramError) as info:
        load_program(source, TASK, run_probe=False)
    assert info.value.stage == stage


def test_static_rejection_needs_no_probe_and_no_compile():
    """A source-level rejection must happen before anything executes (validate has no timings['compile'])."""
    result = check_program(H + "    import os\n" + R, TASK)  # probe on: still never reached
    assert result.ok is False and result.probe is None
    assert "compile" not in result.timings


# Programs that only the sandboxed probe can catch: run-time crashes, resource exhaustion,
# non-finite results on every state, mutation of inputs. (id, source, substring of the error)
PROBED = [
    ("very-long-loop", H + "    s = 0.0\n    for i in range(10**10):\n        s += x_velocity\n"
     "    return s, {'forward': s}\n", "timed out after 5 s"),
    ("huge-allocation", H + "    a = np.zeros(10**12)\n    return x_velocity + a[0], {'forward': x_velocity}\n",
     "ran out of memory"),
    ("division-by-zero", H + "    return x_velocity / 0.0, {'forward': x_velocity}\n",
     "returned a non-finite total (inf) on sampled state #0 (x_velocity="),
    ("exp-overflow", H + "    return np.exp(1000.0 + x_velocity), {'forward': x_velocity}\n",
     "non-finite total (inf)"),
    ("log-of-zero", H + "    return np.log(0.0 * x_velocity), {'forward': x_velocity}\n", "non-finite total (-inf)"),
    ("non-finite-component", H + "    return x_velocity, {'forward': np.log(0.0 * x_velocity)}\n",
     "non-finite component(s) ['forward']"),
    ("out-of-bounds-constant-index", H + "    return action[10**9], {'forward': x_velocity}\n",
     "IndexError: index is out of bounds"),
    ("out-of-bounds-data-dependent-index",
     H + "    i = int(abs(x_velocity) * 1000.0) + 3\n    return action[i], {'forward': x_velocity}\n",
     "IndexError: index is out of bounds"),
    ("in-place-mutation", H + "    action[0] = 0.0\n" + R, "mutates its input 'action' in place"),
    # reachable only at a clipped action (exactly the bound), which training sees all the time and
    # uniformly sampled actions never do
    ("long-loop-at-clipped-action", H + "    s = 0.0\n    if action[0] >= 1.0:\n        for i in range(10**10):\n"
     "            s += x_velocity\n    return s, {'forward': s}\n", "timed out after 5 s"),
    ("long-loop-at-mixed-bounds", H + "    s = 0.0\n    if action[1] == -1.0 and action[2] == 1.0:\n"
     "        for i in range(10**10):\n            s += x_velocity\n    return s, {'forward': s}\n",
     "timed out after 5 s"),
]


@pytest.fixture(scope="module")
def probed(task, states):
    """Check every probe case, two sandboxed children at a time (each spends most of its time
    starting Python and numba); the test process must outlive all of them."""
    sources = {c[0]: c[1] for c in PROBED}
    sources["accepted-data-dependent-division"] = NEUTRALISED[0][1]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(check_program, src, TASK, timeout_s=5) for name, src in sources.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("needle", [c[2] for c in PROBED], ids=[c[0] for c in PROBED])
def test_rejected_by_the_probe(probed, request, needle):
    result = probed[request.node.callspec.id]
    assert result.ok is False
    assert result.stage == "probe", result.error
    assert result.error.startswith("probe error: compute_reward() "), result.error
    assert needle in result.error, result.error
    assert result.probe is not None and not result.probe.ok
    assert result.probe.wall_s < 30
    assert "compile" in result.timings  # it compiled fine: only running it shows the problem


def test_data_dependent_division_passes_the_probe(probed, states):
    """The probe only rejects what it sees: sampled states have x_velocity != 0, so this is accepted
    (and neutralised at run time, below)."""
    result = probed["accepted-data-dependent-division"]
    assert result.ok, result.error
    assert result.probe.ok and result.probe.n_states == len(states) > 64 and result.probe.per_call_us > 0


# Neutralised rather than rejected: a total that is finite on every sampled state but not on some
# rare state (here x_velocity == 0 exactly) passes the probe (test above); the run-time guard
# replaces the non-finite value by 0 and counts it.
DIV = H + "    return 1.0 / x_velocity, {'inv': 1.0 / x_velocity, 'effort': np.sum(action * action)}\n"
NEUTRALISED = [("division-by-zero-data-dependent", DIV)]


def test_rare_division_by_zero_is_neutralised_at_run_time(task, states):
    program = check_program(DIV, TASK, run_probe=False).program
    s = states[:8].copy()
    s[::2, task.slices()["x_velocity"]] = 0.0  # half the rows hit the singularity
    total, comps = program.batch(s)
    assert np.all(np.isfinite(total)) and np.all(np.isfinite(comps))
    assert np.all(total[::2] == 0.0) and np.all(comps[::2, 0] == 0.0)
    assert program.nonfinite_count == 4
    assert program.error_count == 0
    np.testing.assert_allclose(total[1::2], 1.0 / s[1::2, task.slices()["x_velocity"]][:, 0])


def test_nan_in_the_observation_is_neutralised(task, states):
    program = check_program(DIV, TASK, run_probe=False).program
    s = states[:10].copy()
    s[3, task.slices()["x_velocity"]] = np.nan
    s[7, task.slices()["action"].start] = np.inf
    total, comps = program.batch(s)
    assert total[3] == 0.0 and comps[3, 0] == 0.0  # NaN total and component replaced by 0 ...
    a = s[3, task.slices()["action"]]
    assert comps[3, 1] == np.sum(a * a)  # ... the finite component is kept
    assert np.isfinite(total[7]) and total[7] != 0.0 and comps[7, 1] == 0.0  # inf component only
    assert program.nonfinite_count == 1  # counts non-finite totals
    clean = program.batch(np.delete(s, [3, 7], axis=0))[0]
    np.testing.assert_array_equal(np.delete(total, [3, 7]), clean)
    assert program.nonfinite_count == 1


def test_run_time_exception_is_neutralised_in_process(task, states):
    """An out-of-bounds index that slips past the probe raises inside the kernel: 0 and counted, no crash."""
    program = check_program(H + "    i = int(abs(x_velocity) * 1000.0) + 3\n"
                            "    return action[i], {'forward': x_velocity}\n", TASK, run_probe=False).program
    total, comps = program.batch(states[:16])
    assert np.all(total == 0.0) and np.all(comps == 0.0)
    assert program.error_count == 16
    assert program.nonfinite_count == 16  # the failed rows are counted as non-finite too


def test_mutating_program_cannot_corrupt_the_callers_states(task, states):
    """A write into an input that slips past the probe (say on a rare branch) must not reach the
    caller's states: batch() hands the program a per-row scratch copy."""
    program = check_program(H + "    action[0] = 0.0\n" + R, TASK, run_probe=False).program
    s = states[:8].copy()
    s[:, task.slices()["action"].start] = 5.0
    before = s.copy()
    program.batch(s)
    np.testing.assert_array_equal(s, before)
