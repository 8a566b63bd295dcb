"""A relocated numba cache (``NUMBA_CACHE_DIR``) works, the probe never writes, and a cache root that
cannot be created is a clear error.

numba reads its settings at import, so each case runs in a fresh Python with the variable set
from the start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

TASK = "hopper-forward"


def _program() -> str:
    # a fresh constant per call: no other test (and no earlier run) has this program cached
    c = uuid.uuid4().int % 1000 / 1000.0
    return ("def compute_reward(x_velocity, action):\n"
            f"    forward = x_velocity + {c!r}\n"
            "    ctrl = 0.001 * np.sum(action * action)\n"
            "    return forward - ctrl, {'forward': forward, 'ctrl': -ctrl}\n")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_") and k != "REWARDSMITH_CACHE"}
    env.update({"REWARDSMITH_CACHE": str(tmp_path / "rs"), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}, **extra)
    return env


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_check_program_with_numba_cache_dir(tmp_path):
    """The failure: every program was rejected ('[Errno 27] File too large') with NUMBA_CACHE_DIR set."""
    src = tmp_path / "reward.py"
    src.write_text(_program())
    out = _python(f"""
        import json
        from rewardsmith.program import check_program
        r = check_program({str(src)!r}, {TASK!r})
        print(json.dumps(r.to_dict()))
    """, _env(tmp_path), tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"], result["error"]
    assert result["probe"]["ok"]
    # the machine code went to the relocated numba cache, not beside the program's source
    assert list((tmp_path / "numba").rglob("*.nbi"))
    assert not list((tmp_path / "rs").rglob("*.nbi"))


def test_cli_check_with_numba_cache_dir(tmp_path):
    src = tmp_path / "reward.py"
    src.write_text(_program())
    out = subprocess.run([sys.executable, "-m", "rewardsmith.cli", "check", str(src), "--task", TASK],
                         env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert out.stdout.startswith("ok: "), out.stdout


def test_the_probe_child_compiles_in_memory_on_a_cache_miss_and_writes_nothing(tmp_path):
    """A parent compiles into one numba cache; a child under the probe's no-writes limit
    (RLIMIT_FSIZE=0) with another, empty numba cache still loads the program, and writes no file."""
    program = _program()
    setup = (
        "from rewardsmith.program.compiler import compile_validated\n"
        "from rewardsmith.program.validate import validate_source\n"
        "from rewardsmith.tasks import get_task\n"
        f"task = get_task({TASK!r})\n"
        f"program = validate_source({program!r}, task)\n"
    )
    first = _python(setup + "compile_validated(program, task)\n", _env(tmp_path), tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (tmp_path / "numba-empty").mkdir()
    before = _files(tmp_path)
    no_writes = ("import resource, signal\n"
                 "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                 "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))\n")
    load = ("import numpy as np\n"
            "compiled = compile_validated(program, task, load_only=True)\n"
            "total, comps = compiled.entry(2.0, np.zeros(3))\n"
            "assert abs(total - comps[0] - comps[1]) < 1e-12 and comps[1] == 0.0\n"
            "print('loaded')\n")
    child = _python(no_writes + setup + load, _env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "numba-empty")),
                    tmp_path)
    assert child.returncode == 0 and "loaded" in child.stdout, child.stderr[-2000:]
    assert _files(tmp_path) == before  # nothing written, nothing rewritten


@pytest.fixture
def unwritable_home(tmp_path, monkeypatch):
    """A home folder under which nothing can be created (root ignores permissions, so: a file)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.delenv("REWARDSMITH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(blocker / "home"))
    return blocker / "home"


def test_unwritable_default_cache_is_a_clear_error(unwritable_home):
    from rewardsmith.errors import RewardsmithError
    from rewardsmith.program import check_program, compiler

    with pytest.raises(RewardsmithError, match="set REWARDSMITH_CACHE to a writable folder"):
        compiler.cache_dir()
    with pytest.raises(RewardsmithError, match=r"cannot create the compile cache .*home"):
        check_program(_program(), TASK, run_probe=False)


def test_cli_check_with_unwritable_default_cache(tmp_path, unwritable_home):
    src = tmp_path / "reward.py"
    src.write_text(_program())
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-m", "rewardsmith.cli", "check", str(src), "--task", TASK],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot create the compile cache"), out.stderr
    assert "REWARDSMITH_CACHE" in lines[0]
