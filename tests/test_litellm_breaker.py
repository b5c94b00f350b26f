"""The litellm backend's circuit breaker: a dead primary endpoint is skipped, not retried, while a
fallback serves; one probe after the cool-down brings it back. Over real HTTP on 127.0.0.1, with
a closed port as the dead endpoint."""

from __future__ import annotations

import socket
import time

import pytest

from pedagogy.backends.base import ChatRequest
from pedagogy.backends.litellm import LiteLLMBackend, _litellm
from pedagogy.backends.litellm_breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from pedagogy.backends.litellm_direct import TRANSPORTS
from pedagogy.errors import BackendError
from pedagogy.testing_server import OpenAICompatServer

TRANSPORT = ["litellm"]
"""The transport of the backends with a dead endpoint: those tests run with each."""


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    TRANSPORT[0] = request.param
    yield request.param
    TRANSPORT[0] = "litellm"


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the breaker on its own ---------------------------------------------------------------------


def test_opens_after_the_threshold_skips_then_one_probe_closes_it():
    clock = Clock()
    b = CircuitBreaker(3, 10.0, clock=clock)
    assert b.admit("a") == ("go", None)
    assert b.unreachable("a") is None and b.unreachable("a") is None
    assert b.state("a") == CLOSED
    opened = b.unreachable("a")
    assert opened is not None and (opened.state, opened.failures) == (OPEN, 3)
    assert b.state("a") == OPEN and b.would_skip("a") and b.admit("a") == ("skip", None)
    assert b.unreachable("a") is None  # a late failure does not extend the cool-down
    clock.now += 10.0
    assert b.state("a") == HALF_OPEN
    admission, event = b.admit("a")
    assert admission == "probe" and event is not None and event.state == HALF_OPEN
    assert b.admit("a") == ("skip", None)  # one probe at a time
    closed = b.reached("a")
    assert closed is not None and closed.state == CLOSED and b.state("a") == CLOSED
    assert [e.state for e in b.events] == [OPEN, HALF_OPEN, CLOSED]
    assert b.unreachable("a") is None  # the count starts again


def test_a_failed_probe_opens_it_for_a_new_cool_down_and_a_cancelled_one_frees_the_slot():
    clock = Clock()
    b = CircuitBreaker(1, 5.0, clock=clock)
    b.unreachable("a")
    clock.now += 5.0
    assert b.admit("a")[0] == "probe"
    b.release("a")  # the probing call was cancelled
    assert b.admit("a")[0] == "probe"
    reopened = b.unreachable("a")
    assert reopened is not None and reopened.state == OPEN
    clock.now += 4.9
    assert b.admit("a") == ("skip", None)
    clock.now += 0.1
    assert b.admit("a")[0] == "probe"
    assert b.events[-1].to_detail()["state"] == HALF_OPEN


def test_an_http_error_is_a_response_and_threshold_zero_turns_it_off():
    b = CircuitBreaker(2, 5.0)
    b.unreachable("a")
    b.reached("a")  # e.g. a 503: the server is up
    assert b.unreachable("a") is None and b.state("a") == CLOSED
    off = CircuitBreaker(0, 5.0)
    for _ in range(10):
        assert off.unreachable("a") is None
    assert off.admit("a") == ("go", None) and off.events == []


def test_bad_settings_name_the_value_and_the_fix():
    with pytest.raises(BackendError, match="breaker_threshold must be an integer >= 0.*got -1"):
        LiteLLMBackend("openai/local", breaker_threshold=-1)
    with pytest.raises(BackendError, match="breaker_cooldown_s must be .* > 0.*got 0"):
        LiteLLMBackend("openai/local", breaker_cooldown_s=0)


# -- the backend with a dead primary and a live fallback ----------------------------------------


def with_dead_primary(fallback: OpenAICompatServer, port: int, **kw) -> LiteLLMBackend:
    kw.setdefault("max_retries", 5)
    kw.setdefault("backoff_s", 0.2)
    return LiteLLMBackend(
        "openai/local",
        api_base=f"http://127.0.0.1:{port}/v1",
        fallbacks=[{"model": "openai/local", "api_base": fallback.base_url}],
        timeout_s=5.0,
        transport=TRANSPORT[0],
        **kw,
    )


async def test_calls_go_to_the_fallback_and_a_probe_closes_the_breaker_when_the_primary_returns(
    transport,
):
    port = closed_port()
    with OpenAICompatServer(delay_s=0.05) as fallback:
        backend = with_dead_primary(fallback, port, max_concurrency=8)
        primary = backend.endpoints[0].label
        _litellm()  # imported before the clock starts (seconds on a busy machine)
        out = await backend.generate([ask(f"q{i}") for i in range(32)])
        assert [c.text for c in out] == [f"q{i}" for i in range(32)]
        # Without the breaker each call would spend 6 attempts (and ~6 s of backoff) at the
        # primary; with it, 3 trials fail there (a few more only if a call's one-second wait
        # for them ran out on a starved machine) and the rest skip it. Counted, not timed.
        failed = [a for c in out for a in c.attempts if a.error is not None]
        assert 3 <= len(failed) <= 8 and {a.endpoint for a in failed} == {primary}
        assert all(a.status is None for a in failed)  # no response came: status NULL
        assert sum("[circuit opened:" in a.error for a in failed) == 1
        opened = [c for c in out if "events" in c.detail.get("circuit", {})]
        assert len(opened) == 1
        [event] = opened[0].detail["circuit"]["events"]
        assert (event["endpoint"], event["state"], event["failures"]) == (primary, OPEN, 3)
        # No attempt at the primary started after its breaker opened (those in flight ended).
        assert all(a.started_at <= backend.breaker.events[0].at.timestamp() for a in failed)
        skipped = [c for c in out if c.detail.get("circuit", {}).get("skipped")]
        assert len(skipped) >= 32 - 8 and all(c.attempts == [] for c in skipped)
        assert skipped[0].detail["circuit"]["skipped"] == [primary]
        assert [e.state for e in backend.breaker.events] == [OPEN]

        # The primary comes back on its port; after the cool-down one call probes it.
        backend.breaker.cooldown_s = 0.3  # the default 30 s, shortened for the test
        with OpenAICompatServer(port=port) as revived:
            time.sleep(0.35)
            [probe] = await backend.generate([ask("back")])
            assert probe.text == "back" and probe.attempts == []
            assert len(revived.requests) == 1
            states = [e["state"] for e in probe.detail["circuit"]["events"]]
            assert states == [HALF_OPEN, CLOSED]
            assert backend.breaker.state(primary) == CLOSED
            served = len(fallback.requests)
            later = await backend.generate([ask(f"r{i}") for i in range(8)])
            assert all(c.error is None and "circuit" not in c.detail for c in later)
            assert len(revived.requests) == 9 and len(fallback.requests) == served


async def test_a_failed_probe_reopens_and_the_call_goes_on_to_the_fallback(transport):
    port = closed_port()
    with OpenAICompatServer() as fallback:
        backend = with_dead_primary(fallback, port, breaker_threshold=1, breaker_cooldown_s=0.2)
        [first] = await backend.generate([ask("a")])
        assert first.text == "a" and len(first.attempts) == 2  # one refused, then the fallback
        time.sleep(0.25)
        t0 = time.perf_counter()
        [probed] = await backend.generate([ask("b")])
        assert probed.text == "b" and time.perf_counter() - t0 < 1.0  # no retries at the probe
        assert [a.status for a in probed.attempts] == [None, 200]
        states = [e["state"] for e in probed.detail["circuit"]["events"]]
        assert states == [HALF_OPEN, OPEN]


async def test_without_a_fallback_the_breaker_never_fails_a_call_on_its_own(transport):
    port = closed_port()
    backend = LiteLLMBackend(
        "openai/local",
        api_base=f"http://127.0.0.1:{port}/v1",
        max_retries=2,
        backoff_s=0.01,
        breaker_threshold=1,
        transport=TRANSPORT[0],
    )
    [c] = await backend.generate([ask("a")])
    assert backend.breaker.state(backend.endpoints[0].label) == OPEN
    [again] = await backend.generate([ask("b")])  # every endpoint open: tried as before
    for call in (c, again):
        assert call.error and "after 3 attempts" in call.error
        assert [a.status for a in call.attempts] == [None, None, None]


def test_until_an_endpoint_answers_only_threshold_attempts_are_in_flight_there():
    b = CircuitBreaker(2, 5.0)
    assert not b.crowded("a")
    assert b.sending("a") and b.sending("a")
    assert b.crowded("a")  # two trials in flight: others wait for the first answer
    b.sent("a")
    assert not b.crowded("a")
    b.sending("a")
    b.reached("a")
    b.sent("a")
    b.sent("a")
    assert not b.sending("a") and not b.crowded("a")  # it answered: no limit
    c = CircuitBreaker(2, 5.0)
    assert c.sending("a") and c.sending("a")
    c.sent("a")
    c.unreachable("a")  # a trial failed to connect: it keeps its slot
    assert c.crowded("a")
    c.sent("a")
    c.unreachable("a")  # the second failure opens it: calls skip it, nobody waits
    assert c.state("a") == OPEN and not c.crowded("a")
    assert not CircuitBreaker(0, 5.0).sending("a")


async def test_a_dead_primary_costs_threshold_attempts_not_one_per_call_in_flight(transport):
    port = closed_port()
    with OpenAICompatServer(delay_s=0.05) as fallback:
        backend = with_dead_primary(fallback, port, max_concurrency=32)
        # The wait never runs out here (by default a second: a busy machine could let a call
        # whose wait ran out try the endpoint too), so the count is exact.
        backend.first_answer_wait_s = 60.0
        _litellm()
        out = await backend.generate([ask(f"q{i}") for i in range(64)])
        assert [c.text for c in out] == [f"q{i}" for i in range(64)]
        failed = [a for c in out for a in c.attempts if a.error is not None]
        # The 3 trials; the other calls (and the trials' own retries) waited for them, then
        # skipped it: a failed trial keeps its slot, so none took its place.
        assert len(failed) == 3
    with OpenAICompatServer(delay_s=0.1) as live:  # a live endpoint: one wait, then all at once
        backend = LiteLLMBackend("openai/local", api_base=live.base_url, max_concurrency=16)
        out = await backend.generate([ask(f"r{i}") for i in range(32)])
        assert all(c.error is None for c in out) and live.max_in_flight == 16
