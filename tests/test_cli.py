"""The `rewardsmith` command line: version, help, JSON output, one-line errors with exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rewardsmith import __version__
from rewardsmith.cli import app

ISSUE_TASKS = ["inverted-pendulum", "inverted-double-pendulum", "reacher", "hopper-forward",
               "halfcheetah-forward", "halfcheetah-backward", "swimmer-forward", "pusher"]
GOOD = ("def compute_reward(pole_angle, action):\n"
        "    upright = 1.0 - abs(pole_angle)\n"
        "    ctrl = 0.01 * np.sum(action * action)\n"
        "    return upright - ctrl, {'upright': upright, 'ctrl': -ctrl}\n")
BAD = "import os\ndef compute_reward(pole_angle):\n    return 0.0, {}\n"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REWARDSMITH_CACHE", str(tmp_path_factory.getbasetemp() / "rs-cache"))


@pytest.fixture
def runner():
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"rewardsmith {__version__}"


@pytest.mark.parametrize("command", [[], ["tasks"], ["tasks", "show"], ["check"], ["train"], ["synthesize"], ["report"]],
                         ids=["main", "tasks", "tasks-show", "check", "train", "synthesize", "report"])
def test_help(runner, command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout and "--help" in result.stdout


def test_tasks_json_lists_issue_tasks(runner):
    result = runner.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0
    names = [t["name"] for t in json.loads(result.stdout)]
    assert set(ISSUE_TASKS) <= set(names)


def test_tasks_table(runner):
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0 and "Hopper-v5" in result.stdout


def test_tasks_show_json(runner):
    result = runner.invoke(app, ["tasks", "show", "hopper-forward", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert {"name", "env_id", "description", "variables", "signature", "fitness"} <= set(data)
    assert data["name"] == "hopper-forward" and data["env_id"] == "Hopper-v5"
    assert data["signature"].startswith("def compute_reward(x_velocity: float")
    for var in data["variables"]:
        assert {"name", "shape", "description"} <= set(var)


def test_tasks_show_text(runner):
    result = runner.invoke(app, ["tasks", "show", "point-goal"])
    assert result.exit_code == 0 and "def compute_reward(position" in result.stdout


def test_unknown_task_is_one_line(runner):
    result = runner.invoke(app, ["tasks", "show", "hoper"])
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "unknown task 'hoper'" in line and "Did you mean 'hopper-forward'?" in line


def test_debug_shows_the_exception(runner):
    from rewardsmith.errors import TaskNotFoundError

    result = runner.invoke(app, ["--debug", "tasks", "show", "hoper"])
    assert result.exit_code == 1
    assert isinstance(result.exception, TaskNotFoundError)


def test_entry_point_one_line_and_debug_traceback():
    """Through the real console entry point (a process): no traceback, unless --debug."""
    cmd = [sys.executable, "-c", "from rewardsmith.cli import main; main()"]
    plain = subprocess.run([*cmd, "check", "nope.py", "--task", "nope"], capture_output=True, text=True, check=False)
    assert plain.returncode == 1
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith("error: unknown task 'nope'")
    debug = subprocess.run([*cmd, "--debug", "check", "nope.py", "--task", "nope"], capture_output=True, text=True,
                           check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_check_good_and_bad(runner, tmp_path):
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(GOOD)
    bad.write_text(BAD)
    ok = runner.invoke(app, ["check", str(good), "--task", "inverted-pendulum", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["ok"] is True and data["error"] is None and data["components"] == ["upright", "ctrl"]

    rejected = runner.invoke(app, ["check", str(bad), "--task", "inverted-pendulum", "--json"])
    assert rejected.exit_code == 1
    data = json.loads(rejected.stdout)
    assert data["ok"] is False and "import" in data["error"] and data["components"] == []

    text = runner.invoke(app, ["check", str(bad), "--task", "inverted-pendulum"])
    assert text.exit_code == 1 and text.stderr.startswith(f"rejected: {bad}")


def test_check_missing_file(runner, tmp_path):
    result = runner.invoke(app, ["check", str(tmp_path / "missing.py"), "--task", "inverted-pendulum"])
    assert result.exit_code == 1
    assert "no such file" in _one_error_line(result)


@pytest.mark.parametrize("flags", [[], ["--builtin", "--sparse"], ["--builtin", "--reward", "x.py"]],
                         ids=["none", "builtin+sparse", "builtin+reward"])
def test_train_needs_exactly_one_reward(runner, flags):
    result = runner.invoke(app, ["train", "--task", "hopper-forward", *flags])
    assert result.exit_code == 1
    assert "exactly one of --reward FILE, --builtin or --sparse" in _one_error_line(result)


def test_train_no_builtin_reward(runner):
    result = runner.invoke(app, ["train", "--task", "halfcheetah-backward", "--builtin"])
    assert result.exit_code == 1
    assert "no built-in reward" in _one_error_line(result)


def test_train_tiny_run(runner, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "inverted-pendulum", "--builtin", "--steps", "256",
                                 "--n-envs", "2", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("fitness_mean", "fitness_std", "success_rate", "steps", "wall_s"):
        assert key in data
    assert data["steps"] >= 256 and data["fitness_mean"] > 0
    assert (out / "model.zip").is_file() and (out / "result.json").is_file()


def test_synthesize_needs_a_task(runner):
    result = runner.invoke(app, ["synthesize"])
    assert result.exit_code == 1
    assert "--task" in _one_error_line(result)


def test_synthesize_unknown_coder(runner, tmp_path):
    result = runner.invoke(app, ["synthesize", "--task", "inverted-pendulum", "--coder", "ofline",
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "offline" in _one_error_line(result)


def test_synthesize_tiny_offline_run(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["synthesize", "--task", "inverted-pendulum", "--iterations", "1", "--samples", "1",
                                 "--steps", "256", "--final-seeds", "1", "--n-envs", "2", "--workers", "1",
                                 "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("task", "best", "baselines", "hns", "tokens", "requests"):
        assert key in data
    assert data["coder"] == "offline" and data["best"]["source"] == str(out / "best_reward.py")
    assert (out / "summary.json").is_file()
    again = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "fig.png")])
    assert again.exit_code == 0 and (tmp_path / "fig.png").is_file()
    missing = runner.invoke(app, ["report", str(tmp_path)])
    assert missing.exit_code == 1 and "no synthesis run to draw" in _one_error_line(missing)


def test_synthesize_interactive_shows_table_and_takes_feedback(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["synthesize", "--task", "inverted-pendulum", "--iterations", "2", "--samples", "1",
                                 "--steps", "256", "--final-seeds", "1", "--no-baselines", "--n-envs", "2",
                                 "--workers", "1", "--interactive", "--gif-frames", "2", "--out", str(out)],
                           input="more pole angle upright\n\n")
    assert result.exit_code == 0, result.output
    assert "round 1" in result.stderr and "rollout.gif" in result.stderr
    assert (out / "rounds" / "r00" / "c00" / "rollout.gif").is_file()
    prompt = json.loads((out / "rounds" / "r01" / "prompt.json").read_text())[1]["content"]
    assert "more pole angle upright" in prompt
    assert "best reward:" in result.stdout


SLOW = ("def compute_reward(pole_angle, action):\n"
        "    acc = 0.0\n"
        "    for i in range(20000):\n"
        "        acc = math.sin(acc + pole_angle + i)\n"
        "    return 1.0 + 0.0 * acc, {'alive': 1.0}\n")


def test_train_past_its_time_limit_stops_with_one_line(runner, tmp_path):
    reward = tmp_path / "slow.py"
    reward.write_text(SLOW)
    result = runner.invoke(app, ["train", "--task", "inverted-pendulum", "--reward", str(reward), "--steps", "200000",
                                 "--n-envs", "2", "--time-limit", "8", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    line = _one_error_line(result)
    assert "out of time" in line and "8 s" in line
    assert not (tmp_path / "run" / "result.json").exists()
