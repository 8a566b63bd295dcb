"""The reward-program pipeline end to end: validate -> rewrite -> compile (cached) -> probe -> run."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from rewardsmith.errors import RewardProgramError
from rewardsmith.program import check_program, compiler, load_program, sample_states
from rewardsmith.state import split_state
from rewardsmith.tasks import get_task

TASK = "hopper-forward"

GOOD = '''"""Hop forward, stay upright, spend little effort."""
import numpy as np


def upright_bonus(height: float, angle: float) -> float:
    """1 while the torso is high and level."""
    return 1.0 if height > 0.8 and abs(angle) < 0.2 else 0.0


def control_cost(action):
    return 0.001 * np.sum(action * action)


def compute_reward(x_velocity: float, torso_height: float, torso_angle: float, action: np.ndarray):
    parts = {"forward": x_velocity}
    parts["alive"] = upright_bonus(torso_height, torso_angle)
    parts["ctrl"] = -control_cost(action)
    total = parts["forward"] + parts["alive"] + parts["ctrl"]
    if torso_height < 0.5:
        parts["fallen"] = -1.0
        total = total - 1.0
    return total, parts
'''
COMPONENTS = ["forward", "alive", "ctrl", "fallen"]
PARAMS = ["x_velocity", "torso_height", "torso_angle", "action"]


@pytest.fixture(scope="module", autouse=True)
def _program_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REWARDSMITH_CACHE", str(tmp_path_factory.mktemp("rs-cache")))
        yield


@pytest.fixture(scope="module")
def task():
    return get_task(TASK)


@pytest.fixture(scope="module")
def states(task):
    s = sample_states(task).copy()
    fallen = s[:8].copy()
    fallen[:, task.slices()["torso_height"]] = 0.3  # exercise the branch that adds "fallen"
    return np.ascontiguousarray(np.vstack([s, fallen]))


@pytest.fixture(scope="module")
def good(task):
    """The good program, fully checked once (with the probe)."""
    result = check_program(GOOD, task)
    assert result.ok, result.error
    return result


def test_sampled_states_include_clipped_actions(task):
    """Training sees actions clipped to the box (exactly +-1) all the time: so must the probe."""
    s = sample_states(task)
    actions = s[:, task.slices()["action"]]
    rows = {tuple(a) for a in actions.tolist()}
    d = actions.shape[1]
    for corner in [(1.0,) * d, (-1.0,) * d, (0.0,) * d, tuple((-1.0) ** k for k in range(d))]:
        assert corner in rows, corner
    for j in range(d):  # each component alone at each bound, and at the bounds with others random
        assert any(a[j] == 1.0 and a.count(0.0) == d - 1 for a in rows)
        assert any(a[j] == -1.0 and a.count(0.0) == d - 1 for a in rows)
    bang_bang = [a for a in rows if all(abs(v) == 1.0 for v in a)]
    assert len(set(bang_bang)) == 2 ** d  # every corner, reached by driving the env with them
    assert np.all(np.abs(actions) <= 1.0)


def test_components_that_do_not_add_up_get_a_note(good, task):
    """Accepted, but the per-component feedback would miss a term: check says so, with the gap."""
    assert good.probe.component_gap == [0.0, 0.0]
    assert not any("add up" in n for n in good.notes)
    src = ("def compute_reward(x_velocity, action):\n"
           "    ctrl = 0.001 * np.sum(action * action)\n"
           "    return x_velocity - ctrl + 0.5, {'forward': x_velocity, 'ctrl': -ctrl}\n")
    result = check_program(src, task)
    assert result.ok, result.error
    gap = result.probe.component_gap
    assert gap is not None and abs(gap[0] - 0.5) < 1e-9 and abs(gap[1] - 0.5) < 1e-9
    notes = [n for n in result.notes if "components do not add up to the total" in n]
    assert len(notes) == 1 and "total - sum(components) ranges over [0.5, 0.5]" in notes[0], result.notes
    assert json.loads(json.dumps(result.to_dict()))["probe"]["component_gap"] == gap


def test_good_program_is_accepted(good):
    assert good.error is None and good.stage is None
    assert good.components == COMPONENTS  # order of first appearance, "fallen" included
    assert good.params == PARAMS
    assert good.program.components == COMPONENTS and good.program.params == PARAMS
    assert any("import numpy as np" in n for n in good.notes)
    assert good.probe.ok and good.probe.n_states == len(sample_states(get_task(TASK))) > 64
    assert good.probe.per_call_us > 0
    assert set(good.timings) == {"validate", "compile", "probe"}
    as_json = json.loads(json.dumps(good.to_dict()))
    assert as_json["ok"] is True and as_json["components"] == COMPONENTS and as_json["probe"]["ok"]


def test_compiled_batch_equals_python_reference(good, task, states):
    program = good.program
    reference = program.python()
    total, comps = program.batch(states)
    assert total.shape == (len(states),) and comps.shape == (len(states), len(COMPONENTS))
    variables = split_state(task, states)
    for i in range(len(states)):
        t, d = reference(**{p: variables[p][i] for p in PARAMS})
        assert set(d) <= set(COMPONENTS)
        np.testing.assert_allclose(total[i], t, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(comps[i], [d.get(c, 0.0) for c in COMPONENTS], rtol=1e-12, atol=1e-12)
    assert np.any(comps[:, COMPONENTS.index("fallen")] == -1.0)
    assert np.any(comps[:, COMPONENTS.index("alive")] == 1.0)
    assert program.nonfinite_count == 0 and program.error_count == 0


def test_single_call_matches_batch(good, task, states):
    program = good.program
    variables = split_state(task, states[:3])
    total, comps = program.batch(states[:3])
    for i in range(3):
        t, d = program(**{p: variables[p][i] for p in PARAMS}, z_velocity=0.0)  # extras are ignored
        assert t == total[i] and list(d) == COMPONENTS and list(d.values()) == list(comps[i])
    with pytest.raises(TypeError, match="missing variables: action"):
        program(x_velocity=1.0, torso_height=1.0, torso_angle=0.0)


def test_batch_checks_shape_and_fills_out(good, task, states):
    program = good.program
    with pytest.raises(ValueError, match="states must have shape"):
        program.batch(states[:, :-1])
    out = (np.full(4, 99.0), np.full((4, len(COMPONENTS)), 99.0))
    got = program.batch(states[:4], out=out)
    assert got[0] is out[0] and got[1] is out[1]
    np.testing.assert_array_equal(out[0], program.batch(states[:4])[0])


def test_program_from_a_file(tmp_path, good):
    path = tmp_path / "reward.py"
    path.write_text(GOOD)
    result = check_program(path, TASK, run_probe=False)
    assert result.ok and result.components == COMPONENTS
    assert result.program.key == good.program.key  # same source, same compiled program
    missing = check_program(tmp_path / "nope.py", TASK, run_probe=False)
    assert not missing.ok and missing.stage == "parse" and "no such file" in missing.error


def test_compile_cache(tmp_path, monkeypatch, task):
    monkeypatch.setenv("REWARDSMITH_CACHE", str(tmp_path))
    source = f"# cache test {uuid.uuid4().hex}\n" + GOOD  # a key no other test has compiled
    first = check_program(source, task, run_probe=False)
    assert first.ok, first.error
    key = first.program.key
    path = Path(first.program.compiled.path)
    assert path == tmp_path / "programs" / f"rs_{key}.py" and path.read_text() == source
    index = sorted(p.name for p in (path.parent / "__pycache__").glob(f"rs_{key}.*.nbi"))
    assert any(".compute_reward-" in n for n in index) and any("._rs_batch-" in n for n in index)
    assert any(".upright_bonus-" in n for n in index) and any(".control_cost-" in n for n in index)

    second = check_program(source, task, run_probe=False)  # in-process memo
    assert second.ok and second.program.compiled is first.program.compiled
    assert second.timings["compile"] < 0.1 < first.timings["compile"] + 0.1
    assert second.timings["compile"] < first.timings["compile"] / 5

    # A new process has no memo: it loads the machine code from disk and writes nothing new.
    stamps = {p: p.stat().st_mtime_ns for p in (path.parent / "__pycache__").glob(f"rs_{key}.*")}
    del compiler._MEMO[key], sys.modules[f"rs_{key}"]
    third = check_program(source, task, run_probe=False)
    assert third.ok and third.program.compiled is not first.program.compiled
    assert {p: p.stat().st_mtime_ns for p in (path.parent / "__pycache__").glob(f"rs_{key}.*")} == stamps
    s = sample_states(task)[:5]
    np.testing.assert_array_equal(third.program.batch(s)[0], first.program.batch(s)[0])


def test_cache_dir_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDSMITH_CACHE", str(tmp_path / "c"))
    root = compiler.cache_dir()
    assert root == tmp_path / "c" / "programs" and root.is_dir()
    assert root.stat().st_mode & 0o777 == 0o700


COMPILE_ERRORS = [
    ("str-plus-float", "def compute_reward(x_velocity):\n    y = x_velocity\n    z = y + 'a'\n"
     "    return z, {'y': y}\n", 3, "unsupported operation add"),
    ("norm-fro-of-scalar", "def compute_reward(x_velocity):\n    y = x_velocity\n"
     "    z = np.linalg.norm(y, ord='fro')\n    return z, {'y': y}\n", 3, "unsupported operation norm"),
    ("error-in-helper", "def helper(a):\n    b = a * 2.0\n    return np.median(b, 3)\n"
     "def compute_reward(x_velocity):\n    return helper(x_velocity), {'y': x_velocity}\n", 3, "median"),
]


@pytest.mark.parametrize(("source", "line", "needle"), [c[1:] for c in COMPILE_ERRORS],
                         ids=[c[0] for c in COMPILE_ERRORS])
def test_compile_error_names_the_users_line(source, line, needle):
    result = check_program(source, TASK, run_probe=False)
    assert not result.ok and result.stage == "compile", result.error
    assert result.line == line, result.error
    assert result.error.startswith(f"compile error (line {line}): ")
    assert needle in result.error
    assert "\x1b[" not in result.error and "\n" not in result.error and "0x" not in result.error


RETURN_FORM = [
    ("inconsistent-component-keys",
     "def compute_reward(x_velocity):\n    if x_velocity > 0.0:\n        return 1.0, {'a': 1.0}\n"
     "    return 0.0, {'b': 0.0}\n", 4, "every return must give the same components"),
    ("total-without-dict", "def compute_reward(x_velocity):\n    total = x_velocity\n    return total\n", 3,
     "must return (total, {name: value, ...}), but returns `total`"),
    ("duplicate-component", "def compute_reward(x_velocity):\n    return 1.0, {'a': 1.0, 'a': 2.0}\n", 2,
     "appears twice"),
    ("non-literal-key", "def compute_reward(x_velocity):\n    k = 'a'\n    return 1.0, {k: 1.0}\n", 3,
     "string literals"),
    ("dict-local-passed-around",
     "def compute_reward(x_velocity):\n    parts = {'a': 1.0}\n    n = len(parts)\n    return 1.0, parts\n",
     3, "may only be filled with literal keys"),
]


@pytest.mark.parametrize(("source", "line", "needle"), [c[1:] for c in RETURN_FORM],
                         ids=[c[0] for c in RETURN_FORM])
def test_bad_return_form_rejected(source, line, needle):
    result = check_program(source, TASK, run_probe=False)
    assert not result.ok and result.stage == "validate", result.error
    assert result.line == line and needle in result.error, result.error


def test_same_components_in_another_order_are_aligned(task, states):
    source = ("def compute_reward(x_velocity):\n    if x_velocity > 0.0:\n"
              "        return 1.0, {'a': 1.0, 'b': 2.0}\n    return 0.0, {'b': 20.0, 'a': 10.0}\n")
    program = check_program(source, task, run_probe=False).program
    assert program.components == ["a", "b"]
    s = states[:2].copy()
    s[0, task.slices()["x_velocity"]], s[1, task.slices()["x_velocity"]] = 1.0, -1.0
    total, comps = program.batch(s)
    np.testing.assert_array_equal(total, [1.0, 0.0])
    np.testing.assert_array_equal(comps, [[1.0, 2.0], [10.0, 20.0]])


def test_runtime_guard_counts(good, task, states):
    program = good.program
    s = states[:6].copy()
    s[1, task.slices()["x_velocity"]] = np.nan
    s[4, task.slices()["action"].start + 2] = -np.inf
    before = program.nonfinite_count
    total, comps = program.batch(s)
    assert total[1] == 0.0 and total[4] == 0.0
    assert np.all(np.isfinite(comps))
    assert comps[1, COMPONENTS.index("forward")] == 0.0 and comps[4, COMPONENTS.index("ctrl")] == 0.0
    assert program.nonfinite_count == before + 2
    program.batch(s)
    assert program.nonfinite_count == before + 4  # counters accumulate across calls
    assert program.error_count == 0
    clean = np.delete(s, [1, 4], axis=0)
    np.testing.assert_array_equal(np.delete(total, [1, 4]), program.batch(clean)[0])


def test_load_program_raises_with_stage():
    with pytest.raises(RewardProgramError) as info:
        load_program("def compute_reward(x_velocity):\n    return x_velocity\n", TASK, run_probe=False)
    assert info.value.stage == "validate" and info.value.line == 2
    program = load_program(GOOD, TASK, run_probe=False)
    assert program.components == COMPONENTS
