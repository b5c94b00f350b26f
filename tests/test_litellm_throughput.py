"""The litellm backend's fast path: litellm's own price taken once, its connections reused, its
logging skipped only while nothing listens, and calls spread over worker processes with the same
accounting. Correctness only: no timing is asserted here (`litellm_bench` measures)."""

from __future__ import annotations

import asyncio
import os

import pytest

from pedagogy.backends.base import ChatRequest
from pedagogy.backends.litellm import LiteLLMBackend, _litellm
from pedagogy.backends.litellm_bench import litellm_failover, litellm_throughput
from pedagogy.backends.litellm_support import _CALLBACK_LISTS, response_cost
from pedagogy.errors import BackendError
from pedagogy.testing_server import OpenAICompatServer, tool_agent

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression exactly.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


class Recording(LiteLLMBackend):
    """Keeps every response litellm returned."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.responses = []

    async def _call(self, *a, **kw):
        response = await super()._call(*a, **kw)
        self.responses.append(response)
        return response


@pytest.fixture
def server():
    with OpenAICompatServer() as srv:
        yield srv


@pytest.fixture
def no_callbacks(monkeypatch):
    """litellm with empty callback registries (restored after the test)."""
    litellm = _litellm()
    for name in _CALLBACK_LISTS:
        monkeypatch.setattr(litellm, name, [])
    return litellm


async def test_cost_is_the_one_litellm_computed_once_per_call(server, monkeypatch, no_callbacks):
    litellm = no_callbacks
    price = litellm.completion_cost
    priced = []
    original = litellm.response_cost_calculator

    def counting(*a, **kw):
        priced.append(kw.get("model"))
        return original(*a, **kw)

    def again(*a, **kw):
        raise AssertionError("the backend priced a response a second time")

    monkeypatch.setattr(litellm, "response_cost_calculator", counting)
    monkeypatch.setattr(litellm, "completion_cost", again)
    backend = Recording("openai/gpt-4o-mini", api_base=server.base_url, backoff_s=0.01)
    out = await backend.generate([ask("one two three"), ask("four five")])
    assert len(priced) == 2  # one price per call, by litellm, none by the backend
    by_text = {r.choices[0].message.content: r for r in backend.responses}
    for c in out:
        response = by_text[c.text]
        assert c.error is None and c.cost is not None and c.cost > 0
        assert c.cost == response._hidden_params["response_cost"] == response_cost(response)
        assert c.cost == pytest.approx(price(completion_response=response))
    [unknown] = await Recording("openai/local", api_base=server.base_url).generate([ask("x")])
    assert unknown.error is None and unknown.cost is None


async def test_a_model_without_a_price_is_not_priced_again_until_it_gets_one(
    server, monkeypatch, no_callbacks
):
    litellm = no_callbacks
    model = "openai/pedagogy-unpriced-test-model"
    monkeypatch.setattr(litellm, "model_cost", dict(litellm.model_cost))
    priced = []
    original = litellm.response_cost_calculator

    def counting(*a, **kw):
        priced.append(kw.get("model"))
        return original(*a, **kw)

    monkeypatch.setattr(litellm, "response_cost_calculator", counting)
    backend = LiteLLMBackend(model, api_base=server.base_url)
    [first] = await backend.generate([ask("one")])
    assert first.cost is None and len(priced) == 1  # litellm tried, had no price
    later = await backend.generate([ask("two"), ask("three four")])
    assert [c.text for c in later] == ["two", "three four"]
    assert all(c.cost is None and c.completion_tokens > 0 for c in later) and len(priced) == 1
    other = LiteLLMBackend("openai/gpt-4o-mini", api_base=server.base_url)
    [mapped] = await other.generate([ask("five")])  # other models are priced as before
    assert mapped.cost is not None and mapped.cost > 0 and len(priced) == 2

    litellm.register_model({model: {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}})
    [now] = await backend.generate([ask("six seven")])
    assert now.cost == pytest.approx(2 * 1e-6 + 2 * 2e-6) and len(priced) == 3


async def test_one_client_reuses_its_connections_across_batches():
    with OpenAICompatServer(delay_s=0.02) as srv:
        backend = LiteLLMBackend("openai/local", api_base=srv.base_url, max_concurrency=4)
        for round_ in range(3):
            out = await backend.generate([ask(f"{round_} {i}") for i in range(12)])
            assert [c.text for c in out] == [f"{round_} {i}" for i in range(12)]
        assert 1 <= srv.connections <= 4  # at most one per slot, kept across batches


async def test_litellm_logging_is_skipped_while_no_callback_listens(
    server, monkeypatch, no_callbacks
):
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    litellm = no_callbacks
    enqueued = []
    enqueue = GLOBAL_LOGGING_WORKER.ensure_initialized_and_enqueue

    def counting(async_coroutine):
        enqueued.append(async_coroutine)
        return enqueue(async_coroutine)

    monkeypatch.setattr(GLOBAL_LOGGING_WORKER, "ensure_initialized_and_enqueue", counting)
    backend = LiteLLMBackend("openai/local", api_base=server.base_url)
    out = await backend.generate([ask("a"), ask("b")])
    assert [c.text for c in out] == ["a", "b"] and enqueued == []

    class Listener(CustomLogger):
        def __init__(self):
            super().__init__()
            self.seen = []

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            self.seen.append(response_obj.choices[0].message.content)

    listener = Listener()
    monkeypatch.setattr(litellm, "callbacks", [listener])
    [c] = await backend.generate([ask("heard")])
    for _ in range(100):  # the logging worker runs the callback soon after the call
        if listener.seen:
            break
        await asyncio.sleep(0.02)
    assert c.text == "heard" and listener.seen == ["heard"] and len(enqueued) == 1


def test_workers_must_be_a_positive_integer():
    with pytest.raises(BackendError, match="workers must be an integer >= 1"):
        LiteLLMBackend("openai/local", workers=0)
    with pytest.raises(BackendError, match="or 'auto'"):
        LiteLLMBackend("openai/local", workers="many")


def test_auto_workers_are_the_free_cores_only_at_a_high_concurrency(monkeypatch):
    import pedagogy.backends.cores as cores

    monkeypatch.setattr(cores, "free_cores", lambda: 3)
    assert LiteLLMBackend("openai/local", workers="auto", max_concurrency=8).workers == 1
    assert LiteLLMBackend("openai/local", workers="auto", max_concurrency=64).workers == 3
    monkeypatch.setattr(cores, "free_cores", lambda: 1)  # a busy machine: no worker processes
    assert LiteLLMBackend("openai/local", workers="auto", max_concurrency=64).workers == 1
    assert "workers" not in repr(LiteLLMBackend("openai/local"))
    assert "workers=2" in repr(LiteLLMBackend("openai/local", workers=2))


async def test_workers_make_the_calls_with_the_same_accounting():
    with OpenAICompatServer(delay_s=0.05) as srv:
        kw = {"api_base": srv.base_url, "backoff_s": 0.01, "timeout_s": 5.0, "max_concurrency": 3}
        backend = LiteLLMBackend("openai/gpt-4o-mini", workers=2, **kw)
        try:
            out = await backend.generate([ask(f"question number {i}") for i in range(9)])
            assert [c.text for c in out] == [f"question number {i}" for i in range(9)]
            assert len(set(backend.worker_pids)) == 2
            assert srv.max_in_flight <= 3  # one bound over every worker
            [local] = await LiteLLMBackend("openai/gpt-4o-mini", **kw).generate(
                [ask("question number 0")]
            )
            for c in out:
                assert c.error is None and c.model == "openai/gpt-4o-mini"
                assert (c.prompt_tokens, c.completion_tokens) == (3, 3)
                assert c.latency_s >= 0.05 and c.attempts == []
                assert c.cost == local.cost and c.cost > 0

            srv.fail_next(1, status=500)  # a retry, recorded as attempts
            [retried] = await backend.generate([ask("again")])
            assert retried.text == "again" and [a.status for a in retried.attempts] == [500, 200]

            srv.fail_next(100, status=503)  # exhausted retries: an error, not an exception
            [failed] = await backend.generate([ask("lost")])
            srv.fail_next(0)
            assert failed.text == "" and "after 4 attempts" in failed.error

            srv.responder = tool_agent("calculator")
            [acted] = await backend.generate([ask("Compute 4 + 3 =", tools=[CALCULATOR])])
            assert [(t.name, t.arguments) for t in acted.tool_calls] == [
                ("calculator", {"expression": "4+3"})
            ]
            assert acted.finish_reason == "tool_calls"
        finally:
            pids = backend.worker_pids
            backend.close()
        assert backend.worker_pids == []
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_throughput_bench_reports_every_path():
    result = litellm_throughput(
        concurrency=4,
        latency_s=0.01,
        calls=8,
        repeats=1,
        paths=("aiohttp", "before", "backend", "direct"),
    )
    assert result["ideal_calls_per_s"] == pytest.approx(400)
    for path in ("aiohttp", "before", "backend", "direct"):
        summary = result["paths"][path]
        assert summary["errors"] == 0 and len(summary["runs"]) == 1
        for key in ("calls_per_s", "ratio_to_ideal", "cpu_ms_per_call"):
            assert set(summary[key]) == {"min", "median", "max"} and summary[key]["min"] > 0
        assert 0 < summary["idle_estimate"] <= 1
    with pytest.raises(BackendError, match="unknown path"):
        litellm_throughput(paths=("nope",))


def test_failover_bench_times_a_dead_primary_against_the_fallback_alone():
    result = litellm_failover(
        calls=16, concurrency=4, latency_s=0.01, repeats=1, without_breaker=False
    )
    assert "no_breaker" not in result
    for kind in ("fallback_alone", "dead_primary"):
        [run] = result[kind]["runs"]
        assert run["errors"] == 0 and result[kind]["wall_s"]["min"] > 0
    assert result["fallback_alone"]["runs"][0]["dead_attempts"] == 0
    dead = result["dead_primary"]["runs"][0]
    assert dead["breaker_events"] == ["open"] and 3 <= dead["dead_attempts"] <= 4 * 2
    assert result["ratio"]["median"] > 0
