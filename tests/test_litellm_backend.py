"""LiteLLMBackend over real HTTP to the shipped OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import asdict

import pytest

from pedagogy.backends.base import Backend, ChatRequest
from pedagogy.backends.litellm import NO_KEY, LiteLLMBackend
from pedagogy.backends.litellm_direct import TRANSPORTS
from pedagogy.errors import BackendError
from pedagogy.testing_server import OpenAICompatServer

SECRET = "sk-test-SECRET-9f3a7c1e"

TRANSPORT = ["litellm"]
"""The transport the module's backends use: every test runs with each (`transport` fixture)."""


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request):
    TRANSPORT[0] = request.param
    yield request.param
    TRANSPORT[0] = "litellm"


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def backend_for(srv: OpenAICompatServer, **kw) -> LiteLLMBackend:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5.0)
    return make("openai/local", api_base=srv.base_url, **kw)


def make(model: str, **kw) -> LiteLLMBackend:
    return LiteLLMBackend(model, transport=TRANSPORT[0], **kw)


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    with OpenAICompatServer() as srv:
        yield srv


# -- the server on its own ------------------------------------------------------------------


def test_server_answers_chat_and_models_and_records_requests():
    with OpenAICompatServer(lambda body: "forty two", model="m1") as srv:
        assert srv.base_url.startswith("http://127.0.0.1:") and srv.base_url.endswith("/v1")
        body = {"model": "m1", "messages": [{"role": "user", "content": "what is 6 x 7"}]}
        req = urllib.request.Request(
            srv.base_url + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer abc"},
        )
        with urllib.request.urlopen(req) as resp:
            out = json.load(resp)
        assert out["object"] == "chat.completion"
        assert out["choices"][0]["message"] == {"role": "assistant", "content": "forty two"}
        assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        with urllib.request.urlopen(srv.base_url + "/models") as resp:
            assert [m["id"] for m in json.load(resp)["data"]] == ["m1"]
        assert srv.requests == [body]
        assert srv.headers[0]["authorization"] == "Bearer abc"
        srv.fail_next(1, status=503)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(srv.base_url + "/models")
        assert err.value.code == 503
        with urllib.request.urlopen(srv.base_url + "/models") as resp:
            assert resp.status == 200


# -- the backend ----------------------------------------------------------------------------


async def test_batch_comes_back_in_order_with_tokens_latency_and_protocol(server):
    # Later requests answer sooner, so arrival order differs from request order.
    def responder(body):
        i = int(body["messages"][-1]["content"].split()[-1])
        time.sleep(0.01 * (6 - i))
        return f"answer number {i}"

    server.responder = responder
    backend = backend_for(server, max_concurrency=6)
    assert isinstance(backend, Backend)
    out = await backend.generate([ask(f"question {i}", seed=i) for i in range(6)])
    assert [c.text for c in out] == [f"answer number {i}" for i in range(6)]
    for c in out:
        assert c.error is None
        assert c.model == "openai/local"
        assert c.prompt_tokens == 2 and c.completion_tokens == 3
        assert c.latency_s > 0
    assert sorted(r["seed"] for r in server.requests) == list(range(6))
    assert await backend.generate([]) == []


async def test_concurrency_is_bounded_by_max_concurrency():
    with OpenAICompatServer(delay_s=0.15) as srv:
        backend = backend_for(srv, max_concurrency=3)
        out = await backend.generate([ask(f"q{i}") for i in range(9)])
        assert all(c.error is None for c in out)
        assert srv.max_in_flight == 3  # reached the bound, never above it
        assert min(c.latency_s for c in out) >= 0.15


async def test_retries_recover_after_transient_failures(server):
    backend = backend_for(server, max_retries=3)
    server.fail_next(2)
    [c] = await backend.generate([ask("hello")])
    assert c.error is None and c.text == "hello"
    assert len(server.headers) == 3  # two failures, then the answer: our retries, not the SDK's


async def test_exhausted_retries_give_an_error_completion_not_an_exception(server):
    backend = backend_for(server, max_retries=2)
    server.fail_next(100, status=503)
    out = await backend.generate([ask("a"), ask("b")])
    assert [c.text for c in out] == ["", ""]
    assert all(c.error and "after 3 attempts" in c.error and "\n" not in c.error for c in out)
    assert len(server.headers) == 6


async def test_client_errors_are_not_retried(server):
    backend = backend_for(server, max_retries=3)
    server.fail_next(1, status=400)
    [c] = await backend.generate([ask("a")])
    assert c.error and "after 1 attempt)" in c.error
    assert len(server.headers) == 1


async def test_timeout_becomes_an_error_completion():
    with OpenAICompatServer(delay_s=1.0) as srv:
        backend = backend_for(srv, max_retries=0, timeout_s=0.2)
        [c] = await backend.generate([ask("slow")])
        assert c.text == "" and "Timeout" in c.error
        assert c.latency_s < 0.9


async def test_unreachable_endpoint_fails_check_with_the_url():
    url = f"http://127.0.0.1:{free_closed_port()}/v1"
    backend = make("openai/local", api_base=url)
    with pytest.raises(BackendError) as err:
        await backend.check()
    msg = str(err.value)
    assert url in msg and "unreachable (connection refused)" in msg and "api_base" in msg
    assert "\n" not in msg


def test_sync_check_passes_against_a_live_server_and_fails_on_a_dead_one(server):
    backend_for(server).check_reachable()
    assert server.requests[-1]["max_tokens"] == 1
    server.stop()
    with pytest.raises(BackendError, match="unreachable"):
        make("openai/local", api_base=f"http://127.0.0.1:{free_closed_port()}/v1").check_reachable()


async def test_sync_check_inside_a_loop_says_to_await(server):
    with pytest.raises(BackendError, match="await backend.check"):
        backend_for(server).check_reachable()


async def test_api_key_is_sent_but_never_stored_or_shown(server, monkeypatch):
    monkeypatch.setenv("PEDAGOGY_TEST_KEY", SECRET)
    backend = backend_for(server, api_key_env="PEDAGOGY_TEST_KEY", max_retries=0)
    request = ask("hi")
    [c] = await backend.generate([request])
    assert c.error is None
    assert server.headers[-1]["authorization"] == f"Bearer {SECRET}"
    server.fail_next(1, status=401)
    [failed] = await backend.generate([request])
    assert failed.error
    shown = [
        repr(backend),
        str(vars(backend)),
        repr(c),
        json.dumps(asdict(c)),
        repr(failed),
        json.dumps(request.to_record()),
    ]
    assert not any(SECRET in s for s in shown)
    assert "PEDAGOGY_TEST_KEY" in repr(backend)


async def test_missing_key_variable_is_named_in_error_and_check(server, monkeypatch):
    monkeypatch.delenv("PEDAGOGY_MISSING_KEY", raising=False)
    backend = backend_for(server, api_key_env="PEDAGOGY_MISSING_KEY")
    [c] = await backend.generate([ask("hi")])
    assert "PEDAGOGY_MISSING_KEY" in c.error and server.requests == []
    with pytest.raises(BackendError, match="PEDAGOGY_MISSING_KEY"):
        await backend.check()


async def test_local_server_without_key_env_never_gets_the_openai_key(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    [c] = await backend_for(server).generate([ask("hi")])
    assert c.error is None
    assert server.headers[-1]["authorization"] == f"Bearer {NO_KEY}"


async def test_cost_is_none_for_unmapped_models_and_a_number_for_mapped_ones(server):
    [unknown] = await backend_for(server).generate([ask("one two three")])
    assert unknown.error is None and unknown.cost is None
    mapped = make("openai/gpt-4o-mini", api_base=server.base_url, backoff_s=0.01)
    [known] = await mapped.generate([ask("one two three")])
    assert known.error is None and known.cost is not None and known.cost > 0
    assert server.requests[-1]["model"] == "gpt-4o-mini"


def test_backend_survives_several_event_loops(server):
    backend = backend_for(server, max_concurrency=2)
    for _ in range(2):
        out = asyncio.run(backend.generate([ask("x"), ask("y"), ask("z")]))
        assert [c.text for c in out] == ["x", "y", "z"]


def test_bad_constructor_arguments_name_the_value():
    with pytest.raises(BackendError, match="max_concurrency must be >= 1, got 0"):
        LiteLLMBackend("openai/local", max_concurrency=0)
    with pytest.raises(BackendError, match="non-empty string"):
        LiteLLMBackend("")
