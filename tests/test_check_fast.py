"""The fast `check`: a forked probe child that is still locked down, the spawned child as the
fallback, states sampled once per task and cached on disk, and a CLI that never imports torch."""

from __future__ import annotations

import functools
import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rewardsmith.program import check_program
from rewardsmith.program import states as states_mod
from rewardsmith.program.forked import probe_forked
from rewardsmith.program.probe import probe
from rewardsmith.tasks import get_task

TASK = "hopper-forward"
GOOD = ("def compute_reward(x_velocity, action):\n"
        "    ctrl = 0.001 * np.sum(action * action)\n"
        "    return x_velocity - ctrl, {'forward': x_velocity, 'ctrl': -ctrl}\n")
MUTATES = ("def compute_reward(x_velocity, action):\n    action[0] = 0.0\n"
           "    return x_velocity, {'forward': x_velocity}\n")


@pytest.fixture(scope="module")
def task():
    return get_task(TASK)


@pytest.fixture(scope="module")
def compiled(task):
    result = check_program(GOOD, task, run_probe=False)
    assert result.ok, result.error
    return result.program.compiled


def _inside_the_child(path, compiled, task, states):  # runs in the forked child, after the lock-down
    facts = {"sid_is_pid": os.getsid(0) == os.getpid(), "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
             "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
             "as": resource.getrlimit(resource.RLIMIT_AS)[0], "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
    try:
        with open(path, "w") as fh:  # creating it (empty) is not prevented; writing into it is
            fh.write("x" * 10)
        facts["wrote"] = True
    except OSError:
        facts["wrote"] = False
    try:
        compiled.entry(1.0, np.zeros(3, dtype=np.float32))  # a new signature: compiling is refused
        facts["compiled"] = True
    except TypeError:
        facts["compiled"] = False
    return {"ok": True, "error": json.dumps(facts)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_forked_child_is_locked_down_before_it_runs_anything(compiled, task, tmp_path):
    states = np.zeros((2, task.state_size))
    result = probe_forked(compiled, task, states, 30.0, 1536, functools.partial(_inside_the_child, tmp_path / "x"))
    facts = json.loads(result["error"])
    assert facts["sid_is_pid"]  # a session (and process group) of its own, killed as a whole
    assert facts["fds"] == [0, 1, 2, 3, 4]  # /dev/null x3, the result pipe and listdir's own
    assert facts["fsize"] == 0 and not facts["wrote"] and (tmp_path / "x").stat().st_size == 0
    assert facts["nofile"] == 16
    assert facts["as"] > 0 and facts["as"] != resource.RLIM_INFINITY
    assert facts["compiled"] is False


def test_the_forked_child_is_killed_at_the_wall_timeout(compiled, task):
    t = time.perf_counter()
    result = probe_forked(compiled, task, np.zeros((1, task.state_size)), 1.0, 1536,
                          lambda *a: time.sleep(60))
    assert result == {"timed_out": True}
    assert time.perf_counter() - t < 10


def test_fork_and_spawn_probes_agree(compiled, task):
    states = states_mod.sample_states(task)
    forked = probe(GOOD, task, states=states, compiled=compiled, mode="fork")
    spawned = probe(GOOD, task, states=states, compiled=compiled, mode="spawn")
    assert forked.ok and spawned.ok, (forked.error, spawned.error)
    assert forked.n_states == spawned.n_states == len(states)
    assert forked.component_gap == spawned.component_gap
    assert forked.network_isolated == spawned.network_isolated
    with pytest.raises(ValueError, match="probe mode"):
        probe(GOOD, task, states=states, mode="thread")


def test_the_spawned_fallback_still_rejects(task):
    os.environ["REWARDSMITH_PROBE"] = "spawn"
    try:
        result = check_program(MUTATES, task, timeout_s=20)
    finally:
        del os.environ["REWARDSMITH_PROBE"]
    assert not result.ok and "mutates its input 'action' in place" in result.error


def test_states_are_sampled_once_and_cached_on_disk(task, tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDSMITH_CACHE", str(tmp_path))
    monkeypatch.setattr(states_mod, "_STATES", {})
    first = states_mod.sample_states(task, n=8, seed=3)
    files = list((tmp_path / "states").glob("*.npy"))
    assert len(files) == 1 and not list((tmp_path / "states").glob("*.tmp"))
    monkeypatch.setattr(states_mod, "_STATES", {})  # as a new process would

    def no_env(*args):
        raise AssertionError("sampled again instead of loading the cache")

    monkeypatch.setattr(states_mod, "_sample", no_env)
    np.testing.assert_array_equal(states_mod.sample_states(task, n=8, seed=3), first)
    keys = {states_mod.states_key(task, 8, 3), states_mod.states_key(task, 8, 4),
            states_mod.states_key(task, 9, 3), states_mod.states_key(get_task("hopper-forward@1"), 8, 3)
            if get_task("hopper-forward").version > 1 else "v1"}
    assert len(keys) == 4


def test_a_cut_off_states_file_is_sampled_again(task, tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDSMITH_CACHE", str(tmp_path))
    monkeypatch.setattr(states_mod, "_STATES", {})
    first = states_mod.sample_states(task, n=8, seed=5)
    path = next((tmp_path / "states").glob("*.npy"))
    path.write_bytes(path.read_bytes()[:100])
    monkeypatch.setattr(states_mod, "_STATES", {})
    np.testing.assert_array_equal(states_mod.sample_states(task, n=8, seed=5), first)
    np.testing.assert_array_equal(np.load(path), first)  # rewritten whole


def test_cli_check_imports_neither_torch_nor_stable_baselines3(tmp_path):
    src = tmp_path / "reward.py"
    src.write_text(GOOD)
    wrapper = textwrap.dedent(f"""
        import json, sys
        sys.argv = ["rewardsmith", "check", {str(src)!r}, "--task", {TASK!r}]
        from rewardsmith.cli import app
        try:
            app()
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
    """)
    env = {**os.environ, "REWARDSMITH_CACHE": str(tmp_path / "rs")}
    out = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok: "), out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    heavy = [m for m in result["modules"] if m.split(".")[0] in ("torch", "stable_baselines3", "tensorboard")]
    assert not heavy, heavy[:5]
