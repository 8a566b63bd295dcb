"""The jinja2 prompt templates shipped in prompts/ render for the built-in tasks."""

from __future__ import annotations

import pytest

from rewardsmith.errors import RewardsmithError
from rewardsmith.prompting import render_prompt, template_names
from rewardsmith.tasks import get_task, list_tasks


def test_templates_shipped():
    assert {"system", "task"} <= set(template_names())


def test_system_prompt_states_the_contract():
    text = render_prompt("system")
    assert "compute_reward" in text
    assert "(total, components)" in text
    assert "{{" not in text and "{%" not in text


def test_task_prompt_for_hopper():
    task = get_task("hopper-forward")
    text = render_prompt("task", task=task)
    assert task.signature in text
    assert task.description in text
    for var in task.variables:
        assert f"| {var.name} |" in text
    assert "| joint_angles | (3,) | rad |" in text


@pytest.mark.parametrize("name", [t.name for t in list_tasks()])
def test_task_prompt_every_task(name):
    assert get_task(name).signature in render_prompt("task.j2", task=get_task(name))


def test_missing_context_and_unknown_template_are_clear_errors():
    with pytest.raises(RewardsmithError, match="'task' is undefined"):
        render_prompt("task")
    with pytest.raises(RewardsmithError, match=r"no prompt template 'nope'; known: .*system, .*task"):
        render_prompt("nope")


def test_prompts_dir_overrides_by_name(tmp_path):
    (tmp_path / "system.j2").write_text("You write rewards for {{ 'robots' }}.\n")
    assert render_prompt("system", prompts_dir=str(tmp_path)) == "You write rewards for robots.\n"
    # templates the folder does not override still come from the package
    task = get_task("hopper-forward")
    assert task.signature in render_prompt("task", prompts_dir=str(tmp_path), task=task)
    with pytest.raises(RewardsmithError, match="no such folder"):
        render_prompt("system", prompts_dir=str(tmp_path / "missing"))
