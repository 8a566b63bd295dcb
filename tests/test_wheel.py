"""The non-editable install works: build a wheel, install it into a fresh virtualenv, use it.

The wheel is built from a copy of the source tree (so the checkout gets no ``build/`` or
``*.egg-info``), with the host's setuptools (``--no-build-isolation``: no network). The virtualenv
has no system site packages and gets rewardsmith only from the wheel; the host's third-party
packages (numpy, torch, mujoco, ...) are made visible afterwards through a ``.pth`` file listing
the host's site-packages directories. Directories named in a ``.pth`` file join ``sys.path`` but
their own ``.pth`` files are not processed, so the host's editable install of rewardsmith (a
``.pth`` import hook) stays inactive. About a minute, most of it Numba compiling and training.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("rewardsmith", "envs", "prompts", "pyproject.toml", "README.md")
GOOD_PENDULUM = (
    "def compute_reward(pole_angle, action):\n"
    "    upright = 1.0 - abs(pole_angle)\n"
    "    ctrl = 0.01 * np.sum(action * action)\n"
    "    return upright - ctrl, {'upright': upright, 'ctrl': -ctrl}\n"
)
GOOD_POINT = (
    "def compute_reward(position, goal):\n"
    "    dist = np.linalg.norm(position - goal)\n"
    "    return -dist, {'dist': -dist}\n"
)


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheelhouse")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", out, src], cwd=src, env=dict(os.environ))
    wheels = list(out.glob("rewardsmith-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "rewardsmith/envs/assets/point_goal.xml" in names
    assert "rewardsmith/envs/point_goal.py" in names
    assert {"rewardsmith/prompts/system.j2", "rewardsmith/prompts/task.j2"} <= set(names)
    assert "rewardsmith/py.typed" in names
    tops = {n.split("/")[0] for n in names} - {"rewardsmith"}
    assert len(tops) == 1 and tops.pop().endswith(".dist-info")  # no top-level envs/ or prompts/


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("venv")
    venv_dir = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv_dir], cwd=root, env=dict(os.environ))
    bindir = venv_dir / "bin"
    # the host's pip installs into the venv (`--python`; ensurepip would take ~15 s). Install
    # first, while the venv sees nothing of the host: pip would else find the host's
    # rewardsmith-0.1.0.dist-info and call the wheel "already installed".
    _run([sys.executable, "-m", "pip", "--python", bindir / "python", "install", "--no-deps", "--no-index",
          "-q", wheel], cwd=root, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    purelib = _run([bindir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=root, env=dict(os.environ)).stdout.strip()
    Path(purelib, "zz_host_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update({"REWARDSMITH_CACHE": str(root / "cache"), "MUJOCO_GL": "egl",
                "PATH": f"{bindir}{os.pathsep}{env['PATH']}"})
    return venv_dir, env


def test_installed_wheel_works(venv, tmp_path):
    venv_dir, env = venv
    bindir = venv_dir / "bin"
    rs = bindir / "rewardsmith"

    where = _run([bindir / "python", "-c", "import rewardsmith, sys; print(rewardsmith.__file__)"], tmp_path, env)
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv_dir.resolve()), where.stdout
    envs = _run([bindir / "python", "-c", "import rewardsmith.envs.point_goal as m; print(m.XML_FILE)"],
                tmp_path, env)
    assert Path(envs.stdout.strip()).is_file() and Path(envs.stdout.strip()).is_relative_to(venv_dir.resolve())
    no_top = _run([bindir / "python", "-c", "import importlib.util as u; print(u.find_spec('envs'), u.find_spec('prompts'))"],
                  tmp_path, env)
    assert no_top.stdout.split() == ["None", "None"]

    assert rs.read_text().splitlines()[0] == f"#!{bindir / 'python'}"  # the script runs the venv's python
    assert _run([rs, "--version"], tmp_path, env).stdout.strip() == "rewardsmith 0.1.0"
    names = [t["name"] for t in json.loads(_run([rs, "tasks", "--json"], tmp_path, env).stdout)]
    assert {"inverted-pendulum", "hopper-forward", "point-goal"} <= set(names)
    prompt = _run([bindir / "python", "-c", "from rewardsmith.prompting import render_prompt; "
                   "from rewardsmith import get_task; print(render_prompt('task', task=get_task('point-goal')))"],
                  tmp_path, env)
    assert "def compute_reward(position: np.ndarray" in prompt.stdout

    (tmp_path / "pendulum.py").write_text(GOOD_PENDULUM)
    (tmp_path / "point.py").write_text(GOOD_POINT)
    for file, task in (("pendulum.py", "inverted-pendulum"), ("point.py", "point-goal")):
        check = json.loads(_run([rs, "check", file, "--task", task, "--json"], tmp_path, env).stdout)
        assert check["ok"] is True and check["error"] is None, check

    run_dir = tmp_path / "run"
    out = _run([rs, "train", "--task", "inverted-pendulum", "--builtin", "--steps", "512", "--n-envs", "2",
                "--out", run_dir, "--json"], tmp_path, env)
    result = json.loads(out.stdout)
    assert result["fitness_mean"] > 0 and result["steps"] >= 512
    assert (run_dir / "model.zip").is_file()
