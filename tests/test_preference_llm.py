"""The LLM teacher, through the real ``openai`` client against the loopback stub server."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from openai_stub import StubServer, dead_url, ok, refusal, serve

from rewardsmith.coders import CoderError, OpenAICoder
from rewardsmith.preference.llm_teacher import REASK, LLMTeacher, parse_verdict
from rewardsmith.preference.render import describe_segment, segment_stats
from rewardsmith.preference.segments import Segment
from rewardsmith.preference.teaching import make_teacher
from rewardsmith.tasks import get_task

TASK = "mountain-car"


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own key or endpoint never leaks into a test."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[StubServer]:
    with serve() as server:
        yield server


@pytest.fixture
def stub(_server: StubServer) -> StubServer:
    _server.requests.clear()
    _server._script.clear()
    return _server


def coder(stub: StubServer, **kw: Any) -> OpenAICoder:
    return OpenAICoder("stub-model", base_url=stub.url, max_retries=1, backoff_s=0.001, timeout_s=5.0, **kw)


def car_segment(start: float, push: float, steps: int = 5, origin: str = "") -> Segment:
    """A mountain-car segment (position, velocity, height, action) moving from ``start`` at ``push``/step."""
    pos = start + push * np.arange(steps)
    states = np.stack([pos, np.full(steps, push), np.sin(3 * pos), np.full(steps, 2.0)], axis=1)
    return Segment(states, origin=origin)


def pairs(n: int) -> tuple[list[Segment], list[Segment]]:
    return ([car_segment(-0.5 + 0.01 * i, 0.01) for i in range(n)],
            [car_segment(-0.6 - 0.01 * i, -0.004) for i in range(n)])


def contents(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["body"]["messages"]]


@pytest.mark.parametrize(("text", "label"), [
    ("Segment 2 climbs higher.\nAnswer: 2", 0.0),
    ("answer: 1", 1.0),
    ("**Answer:** Segment 1", 1.0),
    ("Both look alike.\n\nAnswer: equal\n", 0.5),
    ("First I thought Answer: 1, but no.\nAnswer: 2", 0.0),
    ("The answer is segment 2.", 0.0),
    ("Verdict: tie", 0.5),
    ("After thinking it over:\n2", 0.0),
    ("Segment 1.", 1.0),
    ("I cannot tell which is better.", None),
    ("Answer: 12", None),
    ("", None),
])
def test_parse_verdict(text: str, label: float | None) -> None:
    assert parse_verdict(text) == label


def test_labels_and_prompt(stub: StubServer) -> None:
    stub.push(ok("Segment 2 moves right.\nAnswer: 2"), ok("Hmm, hard to say."), ok("Answer: 1"),
              ok("They are alike.\nAnswer: equal"))
    left, right = pairs(3)
    t = LLMTeacher(TASK, coder=coder(stub))
    labels = t.compare(left, right)
    np.testing.assert_array_equal(labels, [0.0, 1.0, 0.5])
    assert t.errors == [] and t.requests == 4 and len(stub.chat_requests) == 4
    [prompt] = contents(stub.chat_requests[0])
    task = get_task(TASK)
    assert task.description in prompt and task.fitness.description in prompt
    for var in task.variables:
        assert var.name in prompt and var.description in prompt
    assert describe_segment(TASK, left[0]).split("\n")[0] in prompt
    stats = segment_stats(TASK, right[0])["position"]
    assert f"position: start {stats['start']:.3f}, end {stats['end']:.3f}, mean {stats['mean']:.3f}" in prompt
    assert "velocity (1/step): start" in prompt and "Segment 1 (5 steps):" in prompt and "Answer: equal" in prompt
    # the re-ask carries the garbage reply and asks for the verdict line: a new request
    reask = contents(stub.chat_requests[2])
    assert len(reask) == 3 and reask[1] == "Hmm, hard to say." and reask[2] == REASK
    assert [h["label"] for h in t.history] == [0.0, 1.0, 0.5] and t.history[1]["replies"][0] == "Hmm, hard to say."


def test_unparseable_replies_skip_the_pair(stub: StubServer) -> None:
    stub.push(ok("no idea"), ok("still none"), ok("nope"), ok("Answer: 1"))
    left, right = pairs(2)
    t = LLMTeacher(TASK, coder=coder(stub), max_retries=2)
    labels = t.compare(left, right)
    assert math.isnan(labels[0]) and labels[1] == 1.0 and len(stub.chat_requests) == 4
    [err] = t.errors
    assert err.startswith("pair 0: skipped after 3 replies") and "'nope'" in err


def test_refusal_is_reasked(stub: StubServer) -> None:
    stub.push(refusal("I can't help with that."), ok("Answer: 2"))
    t = LLMTeacher(TASK, coder=coder(stub), max_retries=1)
    np.testing.assert_array_equal(t.compare(*pairs(1)), [0.0])
    assert len(stub.chat_requests) == 2 and t.errors == []


def test_no_retries_skips_at_once(stub: StubServer) -> None:
    stub.push(ok("dunno"))
    t = LLMTeacher(TASK, coder=coder(stub), max_retries=0)
    assert math.isnan(t.compare(*pairs(1))[0]) and "after 1 reply " in t.errors[0]


def test_dead_endpoint_is_a_clear_error() -> None:
    url = dead_url()
    t = LLMTeacher(TASK, coder=OpenAICoder("stub-model", base_url=url, max_retries=0, timeout_s=2.0))
    with pytest.raises(CoderError, match=rf"llm teacher could not ask pair 0: .*cannot reach {url}"):
        t.compare(*pairs(1))


def test_default_coder_needs_an_endpoint(stub: StubServer, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    with pytest.raises(CoderError, match="needs an LLM endpoint: set OPENAI_BASE_URL"):
        LLMTeacher(TASK)
    with pytest.raises(CoderError, match="cannot judge"):
        LLMTeacher(TASK, coder="offline")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
    monkeypatch.setenv("REWARDSMITH_CACHE", str(tmp_path))
    stub.push(ok("Answer: 1"))
    t = make_teacher("llm", TASK)
    assert isinstance(t, LLMTeacher) and isinstance(t.coder, OpenAICoder)
    assert t.compare(*pairs(1))[0] == 1.0 and stub.chat_requests[0]["body"]["temperature"] == 0.0


def test_custom_render_and_length_mismatch(stub: StubServer) -> None:
    stub.push(ok("Answer: 2"))
    t = LLMTeacher(TASK, coder=coder(stub), render=lambda task, seg: f"SEGMENT FROM {seg.origin}")
    left = [car_segment(-0.5, 0.01, origin="policy-a")]
    assert t.compare(left, [car_segment(-0.5, 0.0, origin="policy-b")])[0] == 0.0
    [prompt] = contents(stub.chat_requests[0])
    assert "SEGMENT FROM policy-a" in prompt and "SEGMENT FROM policy-b" in prompt
    with pytest.raises(ValueError, match="1 left segments but 0"):
        t.compare(left, [])
