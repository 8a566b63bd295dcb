"""The offline coder on every built-in task: a reward program and a shaping potential that pass
validation, matched from the variables' names, units and meanings."""

from __future__ import annotations

import pytest

from rewardsmith.coders.base import CoderContext, CoderError
from rewardsmith.coders.extract import extract_code
from rewardsmith.coders.offline import OfflineCoder
from rewardsmith.program.validate import validate_source
from rewardsmith.shaping.programs import check_potential, reward_entry_source
from rewardsmith.tasks import get_task, list_tasks

NAMES = sorted({t.name for t in list_tasks()})
NO_STATE_TERM = {"swimmer-forward"}  # only velocities: nothing for a potential of the state to grow with


@pytest.mark.parametrize("name", NAMES)
def test_offline_coder_writes_valid_rewards_and_potentials_for_every_task(name: str) -> None:
    task = get_task(name)
    for shaping in ("none", "potential"):
        if shaping == "potential" and name in NO_STATE_TERM:
            with pytest.raises(CoderError, match="no state term for a potential"):
                OfflineCoder().complete([], n=1, context=CoderContext(task=task, shaping=shaping))
            continue
        for reply in OfflineCoder().complete([], n=2, context=CoderContext(task=task, shaping=shaping)):
            code = extract_code(reply.text)
            assert code is not None
            if shaping == "potential":
                assert "def compute_potential(" in code and "action" not in code.split("):")[0]
                code = reward_entry_source(code)
            validate_source(code, task)  # raises with the reason when invalid


def test_mountain_car_gets_a_height_term_and_no_cost_on_a_discrete_action() -> None:
    task = get_task("mountain-car")
    reply = OfflineCoder().complete([], n=1, context=CoderContext(task=task))[0]
    assert "height" in reply.text and "action_cost" not in reply.text
    potential = extract_code(OfflineCoder().complete([], n=1, context=CoderContext(task=task, shaping="potential"))[0].text)
    assert check_potential(potential, task, run_probe=False).ok
