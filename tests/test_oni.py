"""The ONI bonus: transition descriptions, LLM labelling through the real OpenAI coder against a
loopback server (asynchronous, cached, robust to bad replies), distillation into the classifier,
and PPO training with it."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from openai_stub import Reply, StubServer, dead_url, ok, serve

from rewardsmith.coders import OpenAICoder
from rewardsmith.errors import RewardsmithError
from rewardsmith.intrinsic import ONI, CoderLabeller, OfflineLabeller, TransitionBatch, make_bonus
from rewardsmith.intrinsic.labellers import describe_transition, parse_labels
from rewardsmith.state import join_state
from rewardsmith.tasks import get_task

TASK = get_task("point-maze")
_X = re.compile(r"position = \[(-?\d+\.\d+),")


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with serve() as server:
        yield server


def x_positive(delay_s: float = 0.0):
    """A responder: 1 for each transition in the prompt whose position x is > 0, else 0."""
    def respond(body: dict[str, Any]) -> Reply:
        prompt = body["messages"][-1]["content"]
        labels = [int(float(x) > 0) for x in _X.findall(prompt)]
        return ok(f"Here you go: {labels}", delay_s=delay_s)
    return respond


def states(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, state_size)`` point-maze reward states, positions uniform in the free space."""
    pos = np.c_[rng.uniform(-0.8, 0.8, n), rng.uniform(-0.6, 0.6, n)]
    goal = np.tile([-0.6, 0.4], (n, 1))
    return join_state(TASK, {"position": pos, "velocity": rng.normal(0, 0.3, (n, 2)), "goal": goal,
                             "distance_to_goal": np.linalg.norm(pos - goal, axis=1),
                             "action": rng.uniform(-1, 1, (n, 2))})


def batch(s: np.ndarray, n_envs: int) -> TransitionBatch:
    """``s`` laid out ``(T, n_envs, S)`` as one batch of episodes that end at its last step."""
    s = s.reshape(-1, n_envs, s.shape[-1])
    t = s.shape[0]
    z = np.zeros((t, n_envs), dtype=bool)
    cut = z.copy()
    cut[-1] = True  # episodes end with the batch: a next batch's first steps have no known predecessor
    obs = np.zeros((t, n_envs, 4), dtype=np.float32)
    return TransitionBatch(obs, np.zeros((t, n_envs, 2)), obs, z, cut, s)


def coder_oni(stub: StubServer, **kw: Any) -> tuple[ONI, CoderLabeller]:
    coder = OpenAICoder("stub-model", base_url=stub.url, backoff_s=0.001, timeout_s=5.0, max_retries=0)
    labeller = CoderLabeller(coder, TASK, batch_size=8)
    bonus = ONI(task=TASK, labeller=labeller, **kw)
    bonus.setup(None, None, 2)
    return bonus, labeller


# -- (a) descriptions ---------------------------------------------------------------------------

def test_description_names_every_variable_with_its_unit_and_change() -> None:
    s = states(2, np.random.default_rng(0))
    text = describe_transition(TASK, s[0], s[1])
    lines = text.splitlines()
    assert len(lines) == len(TASK.variables)
    for var, line in zip(TASK.variables, lines):
        assert line.startswith(f"{var.name} = ") and f" {var.unit} " in line and "(change " in line
    assert "n/a" in describe_transition(TASK, None, s[1]) and "n/a" not in text
    assert parse_labels("maybe [1, 2] then [1, 0, 0.5]", 3) == [1.0, 0.0, 0.5]
    assert parse_labels("[1, 0]", 3) is None and parse_labels("no list", 1) is None


# -- (b) LLM labels through the real OpenAI coder --------------------------------------------------

def test_llm_labels_arrive_asynchronously_and_the_cache_stops_a_second_request(stub: StubServer) -> None:
    stub.requests.clear()
    stub.responder = x_positive(delay_s=0.6)
    try:
        bonus, labeller = coder_oni(stub, max_labels=16, label_fraction=1.0)
        s = states(16, np.random.default_rng(1))
        t0 = time.perf_counter()
        bonus.update(batch(s, 2))
        assert time.perf_counter() - t0 < 0.6  # back before the server answered
        assert bonus.n_labels == 0 and bonus.in_flight == 2  # 16 transitions, 8 per prompt
        assert bonus.flush(timeout=10)
        assert len(stub.chat_requests) == 2 and labeller.requests == 2
        assert bonus.n_labels == 16 and bonus.errors == 0
        assert np.array_equal(bonus._y, (np.round(bonus._x[:, 0], 2) > 0).astype(float))  # the server's labels
        assert "Transition 8:" in stub.chat_requests[0]["body"]["messages"][0]["content"]

        logs = bonus.update(batch(s, 2))  # the same transitions again: all from the cache
        assert bonus.flush(timeout=10)
        assert len(stub.chat_requests) == 2
        assert logs["oni_cache_hits"] == 16 and logs["oni_labels"] == 32 and logs["oni_errors"] == 0
        assert "oni_loss" in logs and bonus.compute(batch(s, 2)).shape == (8, 2)
        bonus.close()
    finally:
        stub.responder = None


def test_prose_reply_gives_no_labels_and_a_counted_error(stub: StubServer) -> None:
    stub.requests.clear()
    stub.push(ok("These transitions all look like good progress to me."))
    bonus, labeller = coder_oni(stub, max_labels=8, label_fraction=1.0)
    s = states(8, np.random.default_rng(2))
    bonus.update(batch(s, 2))
    assert bonus.flush(timeout=10)
    assert bonus.errors == 1 and bonus.n_labels == 0 and "no JSON list" in labeller.last_error
    stub.push(ok("I cannot rate these."))
    logs = bonus.update(batch(s, 2))  # failed transitions are asked again; training goes on
    assert logs["oni_errors"] >= 1 and "oni_loss" not in logs and np.all(bonus.compute(batch(s, 2)) == 0)
    assert bonus.flush(timeout=10) and bonus.errors == 2 and len(stub.chat_requests) == 2
    bonus.close()


def test_a_dead_endpoint_is_a_counted_error_not_an_exception() -> None:
    coder = OpenAICoder("stub-model", base_url=dead_url(), backoff_s=0.001, timeout_s=2.0, max_retries=0)
    labeller = CoderLabeller(coder, TASK)
    assert labeller.label(["position = [0.00, 0.00] m (change n/a)"]) == [None]
    assert labeller.errors == 1 and "coder error" in labeller.last_error


# -- (c) distillation ------------------------------------------------------------------------------

def test_classifier_distils_the_labels_from_a_small_fraction() -> None:
    rule = OfflineLabeller(TASK, rule=lambda v: float(v["position"][0] > 0))
    bonus = ONI(task=TASK, labeller=rule, max_labels=32, epochs=10, seed=0)
    bonus.setup(None, None, 4)
    rng = np.random.default_rng(4)
    for _ in range(6):
        bonus.update(batch(states(256, rng), 4))
        bonus.flush(timeout=10)
    test = states(400, np.random.default_rng(5))
    b = bonus.compute(batch(test, 4)).reshape(-1)
    right = test[:, 0] > 0
    assert b[right].mean() > b[~right].mean() + 0.3
    assert 0 < bonus.labelled_fraction < 0.25 and bonus.n_labels == 6 * 26  # 10% of 256, under max_labels
    # a saved and restored bonus gives the same bonus
    again = ONI(task=TASK, labeller=rule)
    again.load_state_dict(bonus.state_dict())
    assert np.allclose(again.compute(batch(test, 4)).reshape(-1), b)
    assert again.labelled_fraction == bonus.labelled_fraction
    bonus.close()
    again.close()


def test_clear_errors_without_task_or_states() -> None:
    with pytest.raises(RewardsmithError, match="needs the task"):
        make_bonus("oni")
    bonus = make_bonus("oni", task=TASK)
    assert isinstance(bonus, ONI) and isinstance(bonus.labeller, OfflineLabeller)
    no_states = TransitionBatch(*batch(states(2, np.random.default_rng(6)), 2).__dict__.values())
    no_states.states = None
    with pytest.raises(RewardsmithError, match="RewardVecEnv"):
        bonus.update(no_states)
    bonus.close()


# -- (d) PPO end to end -----------------------------------------------------------------------------

def test_ppo_trains_with_oni_and_reports_the_labelled_fraction() -> None:
    from rewardsmith.trainer import Trainer

    bonus = ONI(task=TASK)  # offline labeller on the sparse reward
    with Trainer("point-maze", "sparse", n_envs=2, budget=512, intrinsic=bonus, device="cpu") as t:
        t.learn(1024)
        assert t.intrinsic.updates == 2
    assert 0 < bonus.last_update["oni_labelled_fraction"] < 1  # the first update's labels, collected
    assert bonus.flush(timeout=10) and 0 < bonus.labelled_fraction < 1 and bonus.seen == 1024
    bonus.close()


def test_oni_by_name_labels_through_the_configured_endpoint_end_to_end(stub: StubServer, tmp_path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`rewardsmith train --intrinsic oni` with an endpoint configured: the training (in its worker
    process) asks the loopback server for labels and logs the share of steps labelled."""
    from typer.testing import CliRunner

    from rewardsmith.cli import app

    monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("REWARDSMITH_CACHE", str(tmp_path / "cache"))  # a fresh response cache: requests are sent
    stub.requests.clear()
    stub.responder = x_positive()
    try:
        result = CliRunner().invoke(app, ["train", "--task", "point-maze", "--sparse", "--intrinsic", "oni",
                                          "--steps", "2048", "--n-envs", "4", "--out", str(tmp_path / "run")])
    finally:
        stub.responder = None
    assert result.exit_code == 0, result.output
    assert stub.chat_requests and "Transition 1:" in stub.chat_requests[0]["body"]["messages"][0]["content"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "run" / "tensorboard").rglob("events.*")).parent))
    events.Reload()
    fractions = [e.value for e in events.Scalars("intrinsic/oni_labelled_fraction")]
    assert fractions and all(0 < f < 1 for f in fractions[1:])
