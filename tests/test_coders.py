"""The coders, through the real ``openai`` client against a loopback stub server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai_stub import (
    BROKEN,
    HELPER,
    NO_CODE,
    PLAIN,
    PROSE_BLOCKS,
    REWARD,
    StubServer,
    count_tokens,
    cut_json,
    dead_url,
    html_page,
    insufficient_quota,
    length_cut,
    model_not_found,
    n_rejected,
    no_choices,
    ok,
    rate_limited,
    refusal,
    serve,
    server_error,
    slow,
    unauthorized,
)

from rewardsmith.coders import (
    CoderError,
    ExchangeRecorder,
    OpenAICoder,
    ReplayCoder,
    ResponseCache,
    default_coder_kind,
    extract_code,
    load_exchanges,
    make_coder,
)

MODEL = "stub-model"
MESSAGES = [{"role": "system", "content": "You write reward functions."},
            {"role": "user", "content": "Reward reaching the goal."}]
PROMPT_TOKENS = sum(count_tokens(m["content"]) for m in MESSAGES)
FIXED = REWARD.replace("dist}", 'dist, "x": 0.0}')


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
    """A fresh-looking stub per test: empty script and request log, ``n`` honoured."""
    _server.requests.clear()
    _server._script.clear()
    _server.n_supported = True
    _server.web_ui = False
    return _server


def coder(stub: StubServer, **kw: Any) -> OpenAICoder:
    kw.setdefault("backoff_s", 0.001)
    kw.setdefault("timeout_s", 5.0)
    return OpenAICoder(MODEL, base_url=stub.url, **kw)


def one_line_error(exc: pytest.ExceptionInfo[CoderError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# -- responses and extraction -------------------------------------------------------------------


def test_normal_reply(stub: StubServer) -> None:
    c = coder(stub)
    [out] = c.complete(MESSAGES)
    assert out.text == PLAIN and out.model == MODEL and not out.cached
    assert extract_code(out.text) == REWARD
    [req] = stub.chat_requests
    assert req["body"]["model"] == MODEL and req["body"]["messages"] == MESSAGES
    assert req["headers"]["authorization"] == "Bearer sk-none"  # local server, no key anywhere
    assert "n" not in req["body"]


def test_prose_and_several_blocks_picks_compute_reward(stub: StubServer) -> None:
    stub.push(ok(PROSE_BLOCKS))
    [out] = coder(stub).complete(MESSAGES)
    code = extract_code(out.text)
    assert code is not None
    assert "def compute_reward" in code and "def shaped" in code  # helper block joined
    assert "r, terms = compute_reward(p, g)" not in code  # the usage example left out
    assert code.index("def shaped") < code.index("def compute_reward")
    compile(code, "<reward>", "exec")


def test_no_code_block(stub: StubServer) -> None:
    stub.push(ok(NO_CODE))
    [out] = coder(stub).complete(MESSAGES)
    assert out.text == NO_CODE and extract_code(out.text) is None


def test_broken_code_returned_intact(stub: StubServer) -> None:
    stub.push(ok(BROKEN))
    [out] = coder(stub).complete(MESSAGES)
    assert out.text == BROKEN
    assert extract_code(out.text) == "def compute_reward(pos, goal)\n    return -abs(pos - goal\n"


@pytest.mark.parametrize(("text", "expected"), [
    (f"~~~python\n{REWARD}~~~\n", REWARD),
    (f"````py\n{REWARD}````\n", REWARD),
    (f"Sure! Here it is:\n\nimport numpy as np\n{REWARD}\nThis rewards progress.\n",
     f"import numpy as np\n{REWARD}"),
    (f"```python\n{REWARD}", REWARD),  # truncated: the last fence never closed
    (f"```python\n{REWARD}```\nBetter:\n```python\n{FIXED}```", FIXED),  # the last one wins
    (f"```bash\npip install numpy\n```\n```python\n{HELPER}```\n", HELPER),
    ("Nothing to see.\n\n```\n\n```\n", None),
    ("", None),
], ids=["tilde", "four-backticks", "bare-code", "unclosed", "last-wins", "skip-bash", "empty",
        "blank"])
def test_extract_code_styles(text: str, expected: str | None) -> None:
    assert extract_code(text) == expected


# -- retries and errors -------------------------------------------------------------------------


def test_429_then_success(stub: StubServer) -> None:
    stub.push(rate_limited(), ok())
    c = coder(stub)
    [out] = c.complete(MESSAGES)
    assert out.text == PLAIN and len(stub.chat_requests) == 2 and c.usage.requests == 1


def test_500s_then_success(stub: StubServer) -> None:
    stub.push(server_error(), server_error(), ok())
    [out] = coder(stub).complete(MESSAGES)
    assert out.text == PLAIN and len(stub.chat_requests) == 3


def test_500s_exhaust_retries(stub: StubServer) -> None:
    stub.push(*[server_error()] * 3)
    with pytest.raises(CoderError) as exc:
        coder(stub, max_retries=2).complete(MESSAGES)
    assert "server error 500 after 3 tries" in one_line_error(exc)
    assert len(stub.chat_requests) == 3


def test_timeout_retried(stub: StubServer) -> None:
    stub.push(slow(2.0), ok())
    start = time.monotonic()
    [out] = coder(stub, timeout_s=0.5).complete(MESSAGES)
    assert out.text == PLAIN and len(stub.chat_requests) == 2
    assert time.monotonic() - start < 1.9  # gave up on the slow one, did not wait it out


def test_401_bad_key(stub: StubServer) -> None:
    stub.push(unauthorized())
    with pytest.raises(CoderError) as exc:
        coder(stub, api_key="sk-bad").complete(MESSAGES)
    msg = one_line_error(exc)
    assert "API key" in msg and "OPENAI_API_KEY" in msg and stub.url in msg
    assert len(stub.chat_requests) == 1


def test_404_unknown_model(stub: StubServer) -> None:
    stub.push(model_not_found(MODEL))
    with pytest.raises(CoderError) as exc:
        coder(stub).complete(MESSAGES)
    msg = one_line_error(exc)
    assert f"model {MODEL!r} not found" in msg and "--model" in msg
    assert len(stub.chat_requests) == 1


def test_insufficient_quota_not_retried(stub: StubServer) -> None:
    stub.push(insufficient_quota(), ok())
    with pytest.raises(CoderError) as exc:
        coder(stub).complete(MESSAGES)
    assert "no quota left" in one_line_error(exc)
    assert len(stub.chat_requests) == 1


def test_dead_endpoint() -> None:
    url = dead_url()
    c = OpenAICoder(MODEL, base_url=url, max_retries=2, backoff_s=0.001, timeout_s=2.0)
    with pytest.raises(CoderError) as exc:
        c.complete(MESSAGES)
    msg = one_line_error(exc)
    assert f"cannot reach {url}" in msg and "after 3 tries" in msg and "--base-url" in msg


def test_no_key_and_no_url() -> None:
    with pytest.raises(CoderError, match="OPENAI_API_KEY"):
        OpenAICoder(MODEL)


# -- malformed answers -------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [html_page, cut_json, no_choices],
                         ids=["html", "cut-json", "no-choices"])
def test_transient_garbage_retried(stub: StubServer, garbage: Any) -> None:
    stub.push(garbage(), garbage(), ok())
    c = coder(stub)
    [out] = c.complete(MESSAGES)
    assert out.text == PLAIN and out.error is None and out.finish_reason == "stop"
    assert len(stub.chat_requests) == 3 and c.usage.requests == 1


def test_garbage_backoff_is_the_coders(stub: StubServer) -> None:
    stub.push(html_page(), ok())
    start = time.monotonic()
    coder(stub, backoff_s=0.3).complete(MESSAGES)
    assert time.monotonic() - start >= 0.3  # waited like a 5xx retry


def test_html_base_url_without_v1(stub: StubServer) -> None:
    stub.web_ui = True  # a web UI answers every path outside /v1 with its page
    c = OpenAICoder(MODEL, base_url=stub.root_url, max_retries=2, backoff_s=0.001, timeout_s=5.0)
    with pytest.raises(CoderError) as exc:
        c.complete(MESSAGES)
    msg = one_line_error(exc)
    assert "HTML" in msg and "lacks /v1" in msg and f"--base-url {stub.url}" in msg
    assert stub.root_url in msg and "3 tries" in msg
    assert len(stub.chat_requests) == 3


def test_html_persistent_with_v1(stub: StubServer) -> None:
    stub.push(*[html_page()] * 2)
    with pytest.raises(CoderError) as exc:
        coder(stub, max_retries=1).complete(MESSAGES)
    msg = one_line_error(exc)
    assert "HTML" in msg and stub.url in msg and "not an OpenAI-compatible API" in msg


@pytest.mark.parametrize(("garbage", "said"), [(cut_json, "cut-off or invalid JSON"),
                                               (no_choices, "no choices")],
                         ids=["cut-json", "no-choices"])
def test_persistent_garbage_one_line(stub: StubServer, garbage: Any, said: str) -> None:
    stub.push(*[garbage()] * 3)
    with pytest.raises(CoderError) as exc:
        coder(stub, max_retries=2).complete(MESSAGES)
    msg = one_line_error(exc)
    assert said in msg and "3 tries" in msg and stub.url in msg


def test_refusal_is_a_failed_sample(stub: StubServer) -> None:
    stub.push(refusal("I can't help with that."), refusal(None))
    c = coder(stub)
    [out] = c.complete(MESSAGES)
    assert out.failed and out.error == "the model refused to answer: I can't help with that."
    assert extract_code(out.text) is None and len(stub.chat_requests) == 1  # not retried
    [bare] = c.complete([*MESSAGES, {"role": "user", "content": "again"}])
    assert bare.failed and bare.text == "" and "refusal" in (bare.error or "")


def test_length_cut_is_a_failed_sample(stub: StubServer) -> None:
    stub.push(length_cut())
    c = coder(stub)
    [out] = c.complete(MESSAGES)
    assert out.failed and out.finish_reason == "length" and "length limit" in (out.error or "")
    assert out.text == PLAIN[: len(PLAIN) // 2]  # what came back, for the repair conversation
    assert out.completion_tokens == count_tokens(out.text) and len(stub.chat_requests) == 1


def test_failed_samples_among_n(stub: StubServer) -> None:
    stub.push(length_cut())
    outs = coder(stub).complete(MESSAGES, n=2)
    assert [o.failed for o in outs] == [True, True] and len(stub.chat_requests) == 1
    [good] = coder(stub).complete(MESSAGES)
    assert not good.failed and good.error is None


def test_failed_sample_cached_and_replayed(stub: StubServer, tmp_path: Path) -> None:
    stub.push(length_cut())
    run, cache = tmp_path / "run", ResponseCache(tmp_path / "cache")
    [first] = coder(stub, cache=cache, recorder=ExchangeRecorder(run)).complete(MESSAGES)
    [again] = coder(stub, cache=cache).complete(MESSAGES)
    [replayed] = ReplayCoder(run).complete(MESSAGES)
    for out in (again, replayed):
        assert out.cached and (out.text, out.error, out.finish_reason) == (
            first.text, first.error, "length")
    assert len(stub.chat_requests) == 1


# -- n samples ----------------------------------------------------------------------------------


def test_n_supported_one_request(stub: StubServer) -> None:
    c = coder(stub)
    outs = c.complete(MESSAGES, n=3)
    assert len(outs) == 3 and [o.text for o in outs] == [PLAIN] * 3
    assert len(stub.chat_requests) == 1 and stub.chat_requests[0]["body"]["n"] == 3
    assert c.n_supported is True


def test_n_ignored_falls_back_to_separate_requests(stub: StubServer) -> None:
    stub.n_supported = False
    c = coder(stub)
    assert len(c.complete(MESSAGES, n=3)) == 3
    assert len(stub.chat_requests) == 3  # one with n=3 (one choice back), then two more
    assert c.n_supported is False
    c.complete([*MESSAGES, {"role": "user", "content": "again"}], n=2)
    assert len(stub.chat_requests) == 5
    assert all("n" not in r["body"] for r in stub.chat_requests[3:])  # remembered


def test_n_rejected_with_400_falls_back(stub: StubServer) -> None:
    stub.push(n_rejected())
    c = coder(stub)
    assert len(c.complete(MESSAGES, n=3)) == 3
    assert len(stub.chat_requests) == 4 and c.n_supported is False
    assert c.usage.requests == 3


# -- tokens and budget --------------------------------------------------------------------------


def test_token_counting(stub: StubServer) -> None:
    c = coder(stub)
    outs = c.complete(MESSAGES, n=3)
    per_text = count_tokens(PLAIN)
    assert [o.prompt_tokens for o in outs] == [PROMPT_TOKENS, 0, 0]
    assert sum(o.completion_tokens for o in outs) == 3 * per_text
    [one] = c.complete(MESSAGES)
    assert (one.prompt_tokens, one.completion_tokens) == (PROMPT_TOKENS, per_text)
    assert c.usage.to_dict() == {"requests": 2, "prompt_tokens": 2 * PROMPT_TOKENS,
                                 "completion_tokens": 4 * per_text, "cache_hits": 0}
    assert c.tokens_used == 2 * PROMPT_TOKENS + 4 * per_text


def test_token_estimate_without_usage(stub: StubServer) -> None:
    stub.push(ok(usage=False))
    c = coder(stub)
    [out] = c.complete(MESSAGES)
    assert out.prompt_tokens > 0 and out.completion_tokens > 0 and c.tokens_used > 0


def test_max_tokens_budget(stub: StubServer) -> None:
    one = PROMPT_TOKENS + count_tokens(PLAIN)
    c = coder(stub, max_tokens=one + 1)
    c.complete(MESSAGES)
    c.complete(MESSAGES)  # the budget was not spent yet: this request oversteps it
    with pytest.raises(CoderError) as exc:
        c.complete(MESSAGES)
    msg = one_line_error(exc)
    assert "token budget spent" in msg and "--max-tokens" in msg
    assert len(stub.chat_requests) == 2


# -- cache, recorder, replay --------------------------------------------------------------------


def test_cache_second_coder_sends_nothing(stub: StubServer, tmp_path: Path) -> None:
    first = coder(stub, cache=ResponseCache(tmp_path / "cache"))
    a = first.complete(MESSAGES, n=2)
    b = first.complete(MESSAGES, n=2)  # a deliberate resample is a fresh request
    assert len(stub.chat_requests) == 2
    seen = len(stub.chat_requests)
    second = coder(stub, cache=ResponseCache(tmp_path / "cache"))
    a2, b2 = second.complete(MESSAGES, n=2), second.complete(MESSAGES, n=2)
    assert len(stub.chat_requests) == seen  # zero requests
    assert [c.text for c in a2] == [c.text for c in a] and [c.text for c in b2] == [c.text for c in b]
    assert all(c.cached and c.prompt_tokens == 0 == c.completion_tokens for c in a2 + b2)
    assert second.usage.to_dict() == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                      "cache_hits": 2}
    second.complete(MESSAGES, n=1)  # another n is another request
    assert len(stub.chat_requests) == seen + 1


def test_cache_not_consulted_for_budget(stub: StubServer, tmp_path: Path) -> None:
    coder(stub, cache=ResponseCache(tmp_path)).complete(MESSAGES)
    resumed = coder(stub, cache=ResponseCache(tmp_path), max_tokens=1)
    assert resumed.complete(MESSAGES)[0].cached  # cached answers cost no budget
    with pytest.raises(CoderError, match="token budget"):
        resumed.complete([*MESSAGES, {"role": "user", "content": "more"}])
        resumed.complete([*MESSAGES, {"role": "user", "content": "more still"}])


def test_recorder_and_replay_offline(stub: StubServer, tmp_path: Path) -> None:
    run = tmp_path / "run"
    c = coder(stub, recorder=ExchangeRecorder(run))
    stub.push(ok(PROSE_BLOCKS), ok(NO_CODE))
    first = c.complete(MESSAGES)
    follow = [*MESSAGES, {"role": "assistant", "content": first[0].text},
              {"role": "user", "content": "Fix it."}]
    second = c.complete(follow, n=1)
    files = sorted((run / "exchanges").glob("*.json"))
    assert [f.name[:5] for f in files] == ["0001-", "0002-"]
    data = json.loads(files[0].read_text())
    assert data["request"]["messages"] == MESSAGES and data["request"]["model"] == MODEL
    assert data["responses"][0]["text"] == PROSE_BLOCKS and data["cached"] is False
    assert data["prompt_tokens"] == PROMPT_TOKENS and data["timestamp"]
    assert len(load_exchanges(run)) == 2

    replay = ReplayCoder(run)  # no server involved
    seen = len(stub.requests)
    assert replay.complete(MESSAGES)[0].text == PROSE_BLOCKS
    assert replay.complete(follow)[0].text == second[0].text == NO_CODE
    assert len(stub.requests) == seen and replay.usage.cache_hits == 2
    with pytest.raises(CoderError, match="the prompts changed"):
        replay.complete([{"role": "user", "content": "something else"}])


def test_recorder_on_resume_does_not_duplicate(stub: StubServer, tmp_path: Path) -> None:
    run, cache = tmp_path / "run", ResponseCache(tmp_path / "cache")
    coder(stub, cache=cache, recorder=ExchangeRecorder(run)).complete(MESSAGES)
    coder(stub, cache=cache, recorder=ExchangeRecorder(run)).complete(MESSAGES)
    assert len(list((run / "exchanges").glob("*.json"))) == 1
    fresh = tmp_path / "fresh"
    coder(stub, cache=cache, recorder=ExchangeRecorder(fresh)).complete(MESSAGES)
    [only] = load_exchanges(fresh)
    assert only["cached"] is True and len(stub.chat_requests) == 1


def test_replay_of_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(CoderError, match="no recorded exchanges"):
        ReplayCoder(tmp_path)


# -- configuration ------------------------------------------------------------------------------


def test_env_vars_honoured(stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert default_coder_kind() == "openai"
    c = make_coder("openai", model=MODEL, no_cache=True, backoff_s=0.001)
    assert isinstance(c, OpenAICoder) and c.base_url == stub.url
    c.complete(MESSAGES)
    assert stub.chat_requests[-1]["headers"]["authorization"] == "Bearer sk-from-env"


def test_default_coder_kind_offline() -> None:
    assert default_coder_kind() == "offline"


def test_make_coder(stub: StubServer, tmp_path: Path) -> None:
    c = make_coder("openai", model=MODEL, base_url=stub.url, cache_dir=tmp_path / "c",
                   record_dir=tmp_path / "run", max_tokens=10_000, temperature=0.2)
    assert isinstance(c, OpenAICoder) and c.cache is not None and c.recorder is not None
    assert c.temperature == 0.2 and c.max_tokens == 10_000
    c.complete(MESSAGES)
    assert stub.chat_requests[-1]["body"]["temperature"] == 0.2
    r = make_coder("replay", replay_dir=tmp_path / "run")
    assert r.name == "replay" and r.complete(MESSAGES)[0].text == PLAIN
    assert make_coder("openai", model=MODEL, base_url=stub.url, no_cache=True).cache is None
    assert make_coder("offline").name == "offline"
    assert make_coder("offline", record_dir=tmp_path / "off").name == "offline"
    with pytest.raises(CoderError, match="Did you mean 'openai'"):
        make_coder("opnai")
    with pytest.raises(CoderError, match="--replay"):
        make_coder("replay")
