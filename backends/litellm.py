"""The litellm backend: any hosted API or OpenAI-compatible server (vLLM, Ollama, llama.cpp).

litellm gives one call for a hundred providers; this module adds what a long simulation needs on
top of it: bounded concurrency per backend (one semaphore shared by every `generate` call), our
own retries with exponential backoff and jitter, honouring a 429's Retry-After (the OpenAI SDK's
hidden retries are turned off so there is one retry policy, not two), fallback endpoints tried in
order when one fails, a circuit breaker per endpoint (after `breaker_threshold` consecutive
connection failures an endpoint is skipped for `breaker_cooldown_s`, then probed by one call:
`litellm_breaker`), token and cost accounting, and failures that come back as
`Completion.error` instead of exceptions, so one bad call does not end a run of thousands.

Every attempt of a call that needed more than one is kept (`Completion.attempts`: endpoint,
status, one line of error, latency, Retry-After), and stored as `call_attempts` rows with its
turn. An empty answer (no text, no tool calls) counts as a failed attempt. Fallbacks are our own
loop rather than litellm's Router: the Router retries and falls back inside one call with its
own policy (cooldowns, its own retry counts) and does not hand back the attempts it made.

API keys: the backend stores only the *name* of the environment variable (`api_key_env`) and
reads the key at call time. The key never appears in `repr`, records, logs or error messages.
With `api_base` set and no `api_key_env`, a placeholder key is sent, so that a provider key that
litellm would otherwise pick up from the environment (OPENAI_API_KEY) never reaches a local or
third-party server by accident.

litellm is imported lazily (it takes ~4 s), and with `LITELLM_LOCAL_MODEL_COST_MAP` set, because
otherwise it fetches its price map from the internet at import.

Per-call work: litellm's client does milliseconds of Python per call, so at a high concurrency
the client's CPU, not the server, can bound the calls a second (`litellm_bench` measures it).
The backend does none of that work twice: the cost is the price litellm stamped on the response
(`litellm_support.response_cost`), litellm's connections are reused (it keeps one client per
endpoint and event loop), and while no litellm callback is registered its per-call success
logging is skipped (`litellm_support.unlogged`). `workers=N` spreads the calls over N worker
processes behind the same `generate` (`litellm_workers`). `transport="direct"` sends the calls
to an OpenAI-compatible `api_base` without litellm's client, priced by litellm
(`litellm_direct`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pedagogy.backends.base import CallAttempt, ChatRequest, Completion, parse_tool_arguments
from pedagogy.backends.litellm_breaker import CircuitBreaker, CircuitNotes
from pedagogy.backends.litellm_direct import (
    TRANSPORTS,
    DirectClient,
    direct_problems,
    request_fields,
)
from pedagogy.backends.litellm_endpoints import FALLBACK_KEYS, Endpoint, fallback_problems
from pedagogy.backends.litellm_errors import (
    NO_KEY,
    Failure,
    connection_cause,
    empty_failure,
    is_timeout,
    one_line,
)
from pedagogy.backends.litellm_support import (
    Unpriced,
    has_callbacks,
    response_cost,
    unlogged,
    unpriced,
)
from pedagogy.errors import BackendError

if TYPE_CHECKING:
    from pedagogy.backends.litellm_workers import WorkerPool
    from pedagogy.tools.base import ToolCall

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__all__ = [
    "FALLBACK_KEYS",
    "MISSING_TOOL_NAME",
    "NO_KEY",
    "Endpoint",
    "LiteLLMBackend",
    "fallback_problems",
]

MISSING_TOOL_NAME = "<missing>"
"""The name given to a tool call that the model sent without one (no tool has it)."""


AUTO_WORKERS_FROM = 32
"""`workers: auto` starts worker processes only from this `max_concurrency` on."""


def auto_workers(max_concurrency: int) -> int:
    """`workers: auto`: the cores other processes leave free (`cores.free_cores`, measured now)
    when `max_concurrency` is at least AUTO_WORKERS_FROM, else 1 (few calls in flight keep one
    event loop far from busy)."""
    if max_concurrency < AUTO_WORKERS_FROM:
        return 1
    from pedagogy.backends.cores import free_cores

    return free_cores()


def _litellm() -> Any:
    """Import litellm once, quietly."""
    import litellm

    if not getattr(litellm, "_pedagogy_quiet", False):
        litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout
        litellm.set_verbose = False
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
        litellm._pedagogy_quiet = True
    return litellm


class LiteLLMBackend:
    """Chat completions through litellm, with bounded concurrency, retries, fallback endpoints
    and accounting."""

    name = "litellm"
    _skip_litellm_logging = True
    """Make calls without litellm's success/failure logging while no litellm callback is
    registered (`litellm_support.unlogged`)."""
    first_answer_wait_s = 1.0  # the most a call waits while an endpoint's trials are out

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
        fallbacks: list[dict[str, Any]] | None = None,
        max_retry_after_s: float = 60.0,
        workers: int | str = 1,
        breaker_threshold: int = 3,
        breaker_cooldown_s: float = 30.0,
        transport: str = "litellm",
    ):
        if not isinstance(model, str) or not model:
            raise BackendError(
                f"litellm model must be a non-empty string like 'openai/gpt-4o-mini', got {model!r}"
            )
        if max_concurrency < 1:
            raise BackendError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if max_retries < 0:
            raise BackendError(f"max_retries must be >= 0, got {max_retries!r}")
        if workers == "auto":
            workers = auto_workers(max_concurrency)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise BackendError(
                f"workers must be an integer >= 1 (processes that make the calls) or 'auto' "
                f"(the free cores when max_concurrency >= {AUTO_WORKERS_FROM}), got {workers!r}"
            )
        if backoff_s < 0 or timeout_s <= 0 or max_retry_after_s < 0:
            raise BackendError(
                f"backoff_s and max_retry_after_s must be >= 0 and timeout_s > 0, got "
                f"{backoff_s!r}, {max_retry_after_s!r} and {timeout_s!r}"
            )
        problems = fallback_problems(fallbacks)
        if transport not in TRANSPORTS:
            problems.append(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        if problems:
            raise BackendError("; ".join(problems))
        self.model = model
        self.api_base = api_base.rstrip("/") if api_base else None
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.max_retry_after_s = max_retry_after_s
        self.workers = workers
        """Processes that make the calls: 1 makes them in this one; N > 1 spreads them over N
        child processes (`litellm_workers`), for when litellm's own per-call work, not the
        server, bounds the calls a second; `auto` was resolved to a number (`auto_workers`)."""
        self._config = {
            "model": model,
            "api_base": api_base,
            "api_key_env": api_key_env,
            "max_concurrency": max_concurrency,
            "max_retries": max_retries,
            "backoff_s": backoff_s,
            "timeout_s": timeout_s,
            "fallbacks": [dict(f) for f in fallbacks or []] or None,
            "max_retry_after_s": max_retry_after_s,
            "breaker_threshold": breaker_threshold,
            "breaker_cooldown_s": breaker_cooldown_s,
            "transport": transport,
        }
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s)
        """The endpoints' circuit breakers (`litellm_breaker`): after `breaker_threshold`
        consecutive connection failures an endpoint is skipped for `breaker_cooldown_s`, then
        probed by one call; `breaker.events` lists every change (0 turns it off)."""
        self._pool: WorkerPool | None = None
        self.endpoints = [Endpoint(model, self.api_base, api_key_env)] + [
            Endpoint(
                f["model"],
                f["api_base"].rstrip("/") if f.get("api_base") else None,
                f.get("api_key_env"),
            )
            for f in fallbacks or []
        ]
        """The primary endpoint, then the fallbacks, in the order they are tried."""
        if transport == "direct" and (problems := direct_problems(self.endpoints)):
            raise BackendError("; ".join(problems))
        self.transport = transport
        """`litellm` (litellm's client, any provider) or `direct` (`litellm_direct`)."""
        self._direct = DirectClient(max_concurrency) if transport == "direct" else None
        self._rng = random.Random()
        self._unpriced = Unpriced()
        # asyncio primitives bind to the loop that first waits on them; keep one per loop so the
        # backend survives asyncio.run() being called more than once (sync check, tests).
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        fallbacks = [e.label for e in self.endpoints[1:]]
        return (
            f"LiteLLMBackend(model={self.model!r}, api_base={self.api_base!r}, "
            f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency}"
            + (f", workers={self.workers}" if self.workers > 1 else "")
            + (f", transport={self.transport!r}" if self._direct is not None else "")
            + (f", fallbacks={fallbacks!r})" if fallbacks else ")")
        )

    # -- the Backend protocol --------------------------------------------------------------

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order; failures come back as `Completion.error`."""
        if not requests:
            return []
        if self.workers > 1:
            if self._pool is None:
                from pedagogy.backends.litellm_workers import WorkerPool

                self._pool = WorkerPool(
                    self._config, self.workers, self.max_concurrency, self.model
                )
            return await self._pool.generate(requests)
        _litellm()  # import (~4 s the first time) before any latency clock starts
        semaphore = self._get_semaphore()
        return list(await asyncio.gather(*(self._one(r, semaphore) for r in requests)))

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running worker processes ([] when `workers` is 1)."""
        return self._pool.pids if self._pool is not None else []

    def close(self) -> None:
        """Stop the worker processes and close direct connections, if any (a later `generate`
        starts new ones)."""
        if self._pool is not None:
            self._pool.close()
        if self._direct is not None:
            self._direct.close()

    @staticmethod
    def check_request() -> ChatRequest:
        """The request `check` sends."""
        return ChatRequest(
            messages=[{"role": "user", "content": "ping"}], max_tokens=1, purpose="check"
        )

    async def check(self) -> Completion:
        """Make one tiny request (`check_request`) and return its completion, for the caller to
        record as a turn; raise BackendError with the fix if no endpoint can answer.

        A refused connection, an unknown host or a rejected key moves on to the next endpoint at
        once (a configuration error does not heal); other faults are retried as in `generate`.
        """
        _litellm()
        completion = await self._one(self.check_request(), self._get_semaphore(), check=True)
        if completion.error is not None:
            raise BackendError(completion.error)
        return completion

    def check_reachable(self) -> Completion:
        """Synchronous `check`, for code that is not already inside an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.check())
        raise BackendError(
            "check_reachable() was called inside a running event loop; use `await backend.check()`"
        )

    # -- one request -----------------------------------------------------------------------

    async def _one(
        self, request: ChatRequest, semaphore: asyncio.Semaphore, *, check: bool = False
    ) -> Completion:
        """Try the endpoints in order, each up to `max_retries` + 1 times (a fault that will not
        heal by waiting moves on at once, and so does an endpoint whose circuit breaker is open);
        every attempt is kept when one failed."""
        # Latency runs from getting a slot to the final answer: retries and backoff count,
        # waiting for a slot does not.
        async with semaphore:
            t0 = time.perf_counter()
            attempts: list[CallAttempt] = []
            first_error: tuple[BaseException | str, Endpoint, str | None] | None = None
            timeout = min(self.timeout_s, 10.0) if check else self.timeout_s
            breaker = self.breaker
            circuit = CircuitNotes()
            # The breaker only reroutes: with every endpoint open, all are tried as before.
            reroute = not all(breaker.would_skip(e.label) for e in self.endpoints)
            for i, endpoint in enumerate(self.endpoints):
                admission: str = "go"
                if reroute:
                    admission, event = breaker.admit(endpoint.label)
                    circuit.add(event)
                    if admission == "skip":
                        circuit.skipped.append(endpoint.label)
                        continue
                try:
                    api_key = self._api_key(endpoint)
                except BackendError as e:
                    if admission == "probe":
                        breaker.release(endpoint.label)
                    attempts.append(
                        CallAttempt(
                            len(attempts), endpoint.label, error=str(e), started_at=time.time()
                        )
                    )
                    first_error = first_error or (str(e), endpoint, None)
                    continue
                tries = 0
                while True:
                    tries += 1
                    if admission == "go" and reroute and breaker.crowded(endpoint.label):
                        # Before a first attempt and before a retry alike: the trials decide.
                        await self._first_answer(endpoint.label, timeout)
                        if self._rerouted(i):  # its breaker opened meanwhile
                            if tries == 1:
                                circuit.skipped.append(endpoint.label)
                            break
                    started, a0 = time.time(), time.perf_counter()
                    try:
                        response = await self._attempt(request, endpoint, api_key, timeout)
                        completion = self._completion(response, endpoint, t0)
                    except asyncio.CancelledError:
                        if admission == "probe":
                            breaker.release(endpoint.label)
                        raise
                    except Exception as e:
                        failure = Failure.of(e, api_key)
                    else:
                        failure = empty_failure(completion)
                        if failure is None:
                            circuit.add(breaker.reached(endpoint.label))
                            if attempts:
                                attempts.append(
                                    CallAttempt(
                                        len(attempts),
                                        endpoint.label,
                                        status=200,
                                        latency_s=time.perf_counter() - a0,
                                        started_at=started,
                                    )
                                )
                            completion.attempts = attempts
                            circuit.put(completion)
                            return completion
                    line = failure.line
                    if failure.unreachable:
                        opened = breaker.unreachable(endpoint.label)
                        if opened is not None:
                            line += (
                                f" [circuit opened: {endpoint.label} skipped for "
                                f"{breaker.cooldown_s:g} s after {opened.failures} consecutive "
                                "connection failures]"
                            )
                        circuit.add(opened)
                    elif failure.responded:
                        circuit.add(breaker.reached(endpoint.label))
                    attempts.append(
                        CallAttempt(
                            len(attempts),
                            endpoint.label,
                            status=failure.status,
                            error=line,
                            latency_s=time.perf_counter() - a0,
                            retry_after_s=failure.retry_after_s,
                            started_at=started,
                        )
                    )
                    first_error = first_error or (failure.error, endpoint, api_key)
                    if (
                        tries > self.max_retries
                        or not failure.retryable
                        or (check and failure.misconfigured)
                        # a failed probe, or an endpoint whose breaker opened: the next endpoint
                        or (reroute and failure.unreachable and self._rerouted(i))
                    ):
                        break
                    await asyncio.sleep(self._wait(tries, failure.retry_after_s))
                    if reroute and self._rerouted(i):  # another call opened its breaker meanwhile
                        break
            if first_error is None:  # every endpoint skipped: their breakers opened meanwhile
                first_error = ("every endpoint's circuit breaker is open", self.endpoints[0], None)
            error, endpoint, api_key = first_error
            n = len(attempts)
            if check:
                reason = (
                    error if isinstance(error, str) else self._diagnose(error, endpoint, api_key)
                )
                others = len(self.endpoints) - 1
                message = reason + (f" (and the {others} fallback(s) failed too)" if others else "")
            elif attempts:
                last = attempts[-1].error or ""
                message = f"{last} (after {n} attempt{'s' if n > 1 else ''})"
            else:
                message = (
                    f"every endpoint was skipped: circuit open for {', '.join(circuit.skipped)}"
                )
            failed = Completion(
                text="",
                model=self.model,
                latency_s=time.perf_counter() - t0,
                error=message,
                attempts=attempts,
            )
            circuit.put(failed)
            return failed

    async def _attempt(
        self, request: ChatRequest, endpoint: Endpoint, api_key: str | None, timeout: float
    ) -> Any:
        """One attempt, counted as a trial while the endpoint has not answered yet."""
        trial = self.breaker.sending(endpoint.label)
        try:
            return await self._call(request, endpoint, api_key, timeout)
        finally:
            if trial:
                self.breaker.sent(endpoint.label)

    async def _first_answer(self, label: str, timeout: float) -> None:
        """Wait (at most `first_answer_wait_s`, or `timeout`) while the endpoint has not answered yet and its
        trial attempts are in flight; bounded polling, so no event is bound to a loop."""
        deadline = time.perf_counter() + min(timeout, self.first_answer_wait_s)
        while self.breaker.crowded(label) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)

    def _rerouted(self, i: int) -> bool:
        """Whether the breaker now sends calls from endpoint i to a later one."""
        skip = self.breaker.would_skip
        return skip(self.endpoints[i].label) and not all(
            skip(e.label) for e in self.endpoints[i + 1 :]
        )

    async def _call(
        self, request: ChatRequest, endpoint: Endpoint, api_key: str | None, timeout: float
    ) -> Any:
        if self._direct is not None:
            return await self._direct.call(request, endpoint, api_key, timeout)
        kwargs: dict[str, Any] = {
            "model": endpoint.model,
            **request_fields(request),
            "timeout": timeout,
            "max_retries": 0,  # the OpenAI SDK retries twice by default; we retry ourselves
            "drop_params": True,  # providers that reject e.g. `seed` get the call without it
        }
        if endpoint.api_base:
            kwargs["api_base"] = endpoint.api_base
        if api_key is not None:
            kwargs["api_key"] = api_key
        litellm = _litellm()
        if self._skip_litellm_logging and not has_callbacks(litellm):
            if self._unpriced.known(litellm, endpoint.model):
                with unlogged(), unpriced():
                    return await litellm.acompletion(**kwargs)
            with unlogged():
                response = await litellm.acompletion(**kwargs)
            self._unpriced.saw(litellm, endpoint.model, response_cost(response))
            return response
        return await litellm.acompletion(**kwargs)

    def _completion(self, response: Any, endpoint: Endpoint, t0: float) -> Completion:
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        usage = getattr(response, "usage", None)
        return Completion(
            text=(getattr(message, "content", None) or "") if message is not None else "",
            model=endpoint.model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=time.perf_counter() - t0,
            cost=self._cost(response),
            tool_calls=_tool_calls(message),
            finish_reason=(getattr(choices[0], "finish_reason", None) or None) if choices else None,
        )

    @staticmethod
    def _cost(response: Any) -> float | None:
        """USD from litellm's price map, as litellm priced the response when it received it
        (`_hidden_params["response_cost"]`, None for models the map does not know)."""
        return response_cost(response)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter around the nominal delay (0.5x to 1.5x)."""
        return self.backoff_s * (2 ** (attempt - 1)) * self._rng.uniform(0.5, 1.5)

    def _wait(self, attempt: int, retry_after_s: float | None) -> float:
        """The backoff, or what the server asked (Retry-After) when longer, up to
        `max_retry_after_s`."""
        backoff = self._backoff(attempt)
        if retry_after_s is None:
            return backoff
        return max(backoff, min(retry_after_s, self.max_retry_after_s))

    # -- keys, loops, diagnostics ----------------------------------------------------------

    def _api_key(self, endpoint: Endpoint | None = None) -> str | None:
        """The endpoint's key, read now from the environment; never kept on the object."""
        endpoint = endpoint or self.endpoints[0]
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env)
            if not key:
                raise BackendError(
                    f"environment variable {endpoint.api_key_env} (named by `api_key_env`) is not "
                    f"set; export it or fix `api_key_env` in the config"
                )
            return key
        return NO_KEY if endpoint.api_base else None

    def _get_semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._semaphore_loop = loop
        return self._semaphore

    def _diagnose(self, e: BaseException, endpoint: Endpoint, api_key: str | None) -> str:
        where = (
            f"litellm endpoint {endpoint.api_base}"
            if endpoint.api_base
            else f"litellm model {endpoint.model}"
        )
        status = getattr(e, "status_code", None)
        cause = connection_cause(e)
        if cause is not None:
            return f"{where} is unreachable ({cause}); start the server or fix `api_base` in the config"
        if is_timeout(e):
            return (
                f"{where} did not answer within {min(self.timeout_s, 10.0):g} s; check the server "
                f"or raise `timeout_s`"
            )
        if status in (401, 403):
            source = (
                f"the key in ${endpoint.api_key_env}"
                if endpoint.api_key_env
                else "no key (`api_key_env`)"
            )
            return (
                f"{where} rejected {source} (HTTP {status}); set a valid key or fix `api_key_env`"
            )
        if status == 404:
            return (
                f"{where} answered HTTP 404 for model {endpoint.model!r}; fix `model` or "
                f"`api_base` in the config"
            )
        return f"{where} failed a test request: {one_line(e, api_key)}"


def _tool_calls(message: Any) -> list[ToolCall]:
    """The message's tool calls; malformed arguments are kept as `{"_raw": text}` and a missing
    name as `MISSING_TOOL_NAME`, so the agent layer records an invalid action instead of failing."""
    calls = getattr(message, "tool_calls", None) or []
    if not calls:
        return []  # tool-less runs never import pedagogy.tools
    from pedagogy.tools.base import ToolCall

    out = []
    for i, call in enumerate(calls):
        function = getattr(call, "function", None)
        out.append(
            ToolCall(
                name=str(getattr(function, "name", None) or MISSING_TOOL_NAME),
                arguments=parse_tool_arguments(getattr(function, "arguments", None)),
                id=getattr(call, "id", None) or f"call_{i}",
            )
        )
    return out
