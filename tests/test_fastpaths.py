"""The relabel fast paths: fused reductions, no row copy for programs proven not to write into
their inputs (and the copy for every other), and a parallel kernel that agrees with the serial one."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

from rewardsmith.program import check_program
from rewardsmith.program.effects import may_write_inputs
from rewardsmith.program.fuse import fuse_reductions
from rewardsmith.program.kernel import BLOCK
from rewardsmith.state import split_state
from rewardsmith.tasks import get_task

TASK = "hopper-forward"
FOUR = '''
def compute_reward(x_velocity, torso_height, torso_angle, joint_velocities, joint_angles, action):
    forward = 1.0 * x_velocity
    healthy = 1.0 if torso_height > 0.8 and abs(torso_angle) < 0.2 else 0.0
    ctrl = 0.001 * np.sum(action * action)
    smooth = -0.01 * np.sum(np.abs(joint_velocities - 0.5 * joint_angles)) + np.mean(np.square(action)) / x_velocity
    return forward + healthy - ctrl + smooth, {"forward": forward, "healthy": healthy, "ctrl": -ctrl, "smooth": smooth}
'''
# a data-dependent out-of-bounds index: raises on most rows (caught, 0, counted in both counters)
RAISES = ("def compute_reward(x_velocity, action):\n"
          "    i = int(abs(x_velocity) * 3.0)\n"
          "    return 1.0 / x_velocity + action[i], {'a': action[i], 'inv': 1.0 / x_velocity}\n")


@pytest.fixture(scope="module")
def task():
    return get_task(TASK)


def _states(task, n, seed=0):
    s = np.random.default_rng(seed).normal(size=(n, task.state_size))
    xv = task.slices()["x_velocity"].start
    s[::7, xv] = 0.0  # 1/x_velocity: inf, replaced and counted
    s[3::11, xv + 1] = np.nan  # a NaN in the observation
    return s


def _reference(program, task, states):
    fn = program.python()
    parts = split_state(task, states)
    with np.errstate(all="ignore"):
        return np.array([fn(*(parts[p][i] for p in program.params))[0] for i in range(len(states))])


@pytest.mark.parametrize("src, writes", [
    ("def compute_reward(x_velocity, action):\n    return np.sum(action * action), {}\n", False),
    ("def compute_reward(x_velocity, action):\n    s = 0.0\n    for i in range(3):\n        s += action[i]\n"
     "    x_velocity += s\n    a = action * 2.0\n    a += 1.0\n    return x_velocity + a[0] + math.sqrt(2.0), {}\n",
     False),
    ("def compute_reward(x_velocity, action):\n    action[0] = 1.0\n    return x_velocity, {}\n", True),
    ("def compute_reward(x_velocity, action):\n    a = action\n    a += 1.0\n    return x_velocity, {}\n", True),
    ("def compute_reward(x_velocity, action):\n    a = action[1:]\n    a *= 2.0\n    return x_velocity, {}\n", True),
    ("def compute_reward(x_velocity, action):\n    a = np.asarray(action)\n    a -= 1.0\n    return x_velocity, {}\n",
     True),
    ("def compute_reward(x_velocity, action):\n    a, b = action, x_velocity\n    a += 1.0\n    return b, {}\n", True),
    ("def compute_reward(x_velocity, action):\n    a = action if x_velocity > 0 else action * 2.0\n    a /= 2.0\n"
     "    return x_velocity, {}\n", True),
    ("def compute_reward(x_velocity, action):\n    np.add(action, 1.0, action)\n    return x_velocity, {}\n", True),
    ("def compute_reward(x_velocity, action):\n    np.clip(action, 0.0, 1.0, out=action)\n    return x_velocity, {}\n",
     True),
    ("def compute_reward(x_velocity, action):\n    np.nan_to_num(action, False)\n    return x_velocity, {}\n", True),
    ("def compute_reward(x_velocity, action):\n    a = action.copy()\n    a[0] = 2.0\n    return a[0], {}\n", True),
    ("def compute_reward(x_velocity, action):\n    return h(action), {}\ndef h(v):\n    v += 1.0\n    return 0.0\n", True),
])
def test_write_analysis_is_conservative(src, writes):
    assert may_write_inputs(ast.parse(src), "compute_reward", {"action"}) is writes


def test_fused_reductions_match_the_reference_and_numpy(task):
    tree = ast.parse(FOUR)
    shapes = {v.name: tuple(v.shape) for v in task.variables}
    assert len(fuse_reductions(tree, "compute_reward", shapes)) == 3  # sum, sum(abs(...)), mean
    result = check_program(FOUR, task, run_probe=False)
    assert result.ok, result.error
    program = result.program
    assert program.compiled.copies_rows is False
    states = _states(task, 3000)
    total, _ = program.batch(states)
    ref = _reference(program, task, states)
    finite = np.isfinite(ref)
    np.testing.assert_allclose(total[finite], ref[finite], rtol=1e-12, atol=1e-12)
    assert np.all(total[~finite] == 0.0)


def test_fused_helper_rejects_vectors_of_different_lengths(task):
    program = check_program(FOUR, task, run_probe=False).program
    with pytest.raises(ValueError):
        program.compiled.entry(1.0, 1.0, 0.0, np.zeros(3), np.zeros(4), np.zeros(3))


@pytest.mark.parametrize("parallel", [False, True])
def test_a_program_that_writes_into_its_input_still_gets_the_copy(task, parallel):
    src = ("def compute_reward(x_velocity, action):\n    a = action\n    a += 100.0\n    action[1] = -7.0\n"
           "    return x_velocity + a[0], {'forward': x_velocity}\n")
    program = check_program(src, task, run_probe=False).program
    assert program.compiled.copies_rows is True
    states = _states(task, 2 * BLOCK + 5)
    before = states.copy()
    total, _ = program.batch(states, parallel=parallel)
    np.testing.assert_array_equal(states, before)  # the caller's states are untouched
    a0 = states[:, task.slices()["action"].start]
    xv = states[:, task.slices()["x_velocity"].start]
    np.testing.assert_array_equal(total, xv + (a0 + 100.0))  # each row saw its own fresh copy


@pytest.mark.parametrize("src", [FOUR, RAISES])
def test_parallel_and_serial_kernels_agree_exactly(task, src):
    program = check_program(src, task, run_probe=False).program
    states = _states(task, 5 * BLOCK + 123, seed=1)
    results = {}
    for parallel in (False, True):
        before = program.counters.copy()
        total, comps = program.batch(states, parallel=parallel)
        results[parallel] = (total, comps, program.counters - before)
    for a, b in zip(results[False], results[True]):
        np.testing.assert_array_equal(a, b)
    total, comps, counts = results[True]
    assert np.all(np.isfinite(total)) and np.all(np.isfinite(comps))
    assert counts[0] == np.count_nonzero(total == 0.0) > 0  # every replaced total counted once
    if src is RAISES:
        assert 0 < counts[1] < len(states)


def test_small_batches_stay_serial_and_large_ones_run_on_the_faster_kernel(task, monkeypatch):
    from rewardsmith.program import compiler

    program = check_program(FOUR, task, run_probe=False).program
    compiled = program.compiled
    real, calls = compiled.batch, []

    def kernel(mode, seconds):
        def run(*args):
            calls.append(mode)
            time.sleep(seconds)
            real(*args)
        return run

    monkeypatch.setattr(compiled, "batch", kernel("serial", 0.0))
    monkeypatch.setattr(compiled, "_parallel", kernel("parallel", 0.05))  # the slower one here
    monkeypatch.setattr(compiler, "_threads", lambda: 2)
    monkeypatch.setattr(compiled, "_speed", {False: None, True: None})
    monkeypatch.setattr(compiled, "_large_calls", 0)
    program.batch(_states(task, 10))
    assert calls == ["serial"]
    big = _states(task, compiler.PARALLEL_MIN_ROWS)
    calls.clear()
    for _ in range(2 * compiler._EXPLORE_EVERY):
        program.batch(big)
    assert calls[:2] == ["serial", "parallel"]  # each measured once, then the faster one ...
    assert calls.count("parallel") == 3  # ... but for a re-measurement every _EXPLORE_EVERY calls
    calls.clear()
    program.batch(big, parallel=True)
    assert calls == ["parallel"]


def test_kernel_rejects_wrong_shapes_instead_of_writing_past_them(task):
    program = check_program(FOUR, task, run_probe=False).program
    states = _states(task, 64)
    with pytest.raises(ValueError, match="wrong shape"):
        program.batch(states, out=(np.empty(10), np.empty((64, 4))))
    with pytest.raises(ValueError, match="wrong shape"):
        program.batch(states, out=(np.empty(64), np.empty((64, 3))))
    with pytest.raises(ValueError, match="wrong shape"):
        program.compiled.batch(states, np.empty(64), np.empty((64, 4)), np.zeros(1, dtype=np.int64))


def test_the_parallel_kernel_is_cached_across_processes(tmp_path):
    """A second process loads the parallel kernel from numba's cache instead of compiling it."""
    src = FOUR.replace("1.0 * x_velocity", f"{uuid.uuid4().int % 997 + 1}.0 * x_velocity")
    code = textwrap.dedent(f"""
        import json, numpy as np
        from rewardsmith.program import load_program
        p = load_program({src!r}, {TASK!r}, run_probe=False)
        p.batch(np.random.default_rng(0).normal(size=(20000, 14)), parallel=True)
        k = p.compiled.parallel_batch()
        print(json.dumps({{"hits": sum(k.stats.cache_hits.values()), "misses": sum(k.stats.cache_misses.values())}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["REWARDSMITH_CACHE"] = str(tmp_path / "rs")
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True, timeout=300).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert runs[0]["misses"] >= 1 and runs[0]["hits"] == 0
    assert runs[1]["hits"] >= 1 and runs[1]["misses"] == 0
