"""The litellm backend: any hosted API or OpenAI-compatible server (vLLM, Ollama, llama.cpp).

litellm gives one call for a hundred providers; this module adds what a long simulation needs on
top of it: bounded concurrency per backend (one semaphore shared by every `generate` call), our
own retries with exponential backoff and jitter (the OpenAI SDK's hidden retries are turned off so
there is one retry policy, not two), token and cost accounting, and failures that come back as
`Completion.error` instead of exceptions, so one bad call does not end a run of thousands.

API keys: the backend stores only the *name* of the environment variable (`api_key_env`) and
reads the key at call time. The key never appears in `repr`, records, logs or error messages.
With `api_base` set and no `api_key_env`, a placeholder key is sent, so that a provider key that
litellm would otherwise pick up from the environment (OPENAI_API_KEY) never reaches a local or
third-party server by accident.

litellm is imported lazily (it takes ~4 s), and with `LITELLM_LOCAL_MODEL_COST_MAP` set, because
otherwise it fetches its price map from the internet at import.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pedagogy.backends.base import ChatRequest, Completion, parse_tool_arguments
from pedagogy.errors import BackendError

if TYPE_CHECKING:
    from pedagogy.tools.base import ToolCall

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

NO_KEY = "no-key"
"""Sent as the API key to an `api_base` when no `api_key_env` is configured."""

MISSING_TOOL_NAME = "<missing>"
"""The name given to a tool call that the model sent without one (no tool has it)."""

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_MAX_ERROR_CHARS = 300


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
    """Chat completions through litellm, with bounded concurrency, retries and accounting."""

    name = "litellm"

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
    ):
        if not isinstance(model, str) or not model:
            raise BackendError(
                f"litellm model must be a non-empty string like 'openai/gpt-4o-mini', got {model!r}"
            )
        if max_concurrency < 1:
            raise BackendError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if max_retries < 0:
            raise BackendError(f"max_retries must be >= 0, got {max_retries!r}")
        if backoff_s < 0 or timeout_s <= 0:
            raise BackendError(
                f"backoff_s must be >= 0 and timeout_s > 0, got {backoff_s!r} and {timeout_s!r}"
            )
        self.model = model
        self.api_base = api_base.rstrip("/") if api_base else None
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._rng = random.Random()
        # asyncio primitives bind to the loop that first waits on them; keep one per loop so the
        # backend survives asyncio.run() being called more than once (sync check, tests).
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (
            f"LiteLLMBackend(model={self.model!r}, api_base={self.api_base!r}, "
            f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})"
        )

    # -- the Backend protocol --------------------------------------------------------------

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order; failures come back as `Completion.error`."""
        if not requests:
            return []
        _litellm()  # import (~4 s the first time) before any latency clock starts
        semaphore = self._get_semaphore()
        return list(await asyncio.gather(*(self._one(r, semaphore) for r in requests)))

    async def check(self) -> None:
        """Make one tiny request; raise BackendError with the fix if the endpoint cannot answer."""
        api_key = self._api_key()
        req = ChatRequest(messages=[{"role": "user", "content": "ping"}], max_tokens=1)
        try:
            await self._call(req, api_key, timeout=min(self.timeout_s, 10.0))
        except Exception as e:
            raise BackendError(self._diagnose(e, api_key)) from None

    def check_reachable(self) -> None:
        """Synchronous `check`, for code that is not already inside an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.check())
            return
        raise BackendError(
            "check_reachable() was called inside a running event loop; use `await backend.check()`"
        )

    # -- one request -----------------------------------------------------------------------

    async def _one(self, request: ChatRequest, semaphore: asyncio.Semaphore) -> Completion:
        # Latency runs from getting a slot to the final answer: retries and backoff count,
        # waiting for a slot does not.
        async with semaphore:
            t0 = time.perf_counter()
            try:
                api_key = self._api_key()
            except BackendError as e:
                return self._failed(str(e), t0)
            attempts = 0
            while True:
                attempts += 1
                try:
                    response = await self._call(request, api_key, timeout=self.timeout_s)
                except Exception as e:
                    if attempts > self.max_retries or not _retryable(e):
                        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
                        return self._failed(f"{_one_line(e, api_key)} (after {tries})", t0)
                    await asyncio.sleep(self._backoff(attempts))
                    continue
                try:
                    return self._completion(response, t0)
                except Exception as e:  # a response we cannot read fails this call, not the run
                    return self._failed(f"unreadable response: {_one_line(e, api_key)}", t0)

    async def _call(self, request: ChatRequest, api_key: str | None, timeout: float) -> Any:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "timeout": timeout,
            "max_retries": 0,  # the OpenAI SDK retries twice by default; we retry ourselves
            "drop_params": True,  # providers that reject e.g. `seed` get the call without it
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.stop:
            kwargs["stop"] = request.stop
        if request.tools:
            kwargs["tools"] = request.tools
            kwargs["tool_choice"] = "auto"
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if api_key is not None:
            kwargs["api_key"] = api_key
        return await _litellm().acompletion(**kwargs)

    def _completion(self, response: Any, t0: float) -> Completion:
        latency = time.perf_counter() - t0
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        usage = getattr(response, "usage", None)
        return Completion(
            text=(getattr(message, "content", None) or "") if message is not None else "",
            model=self.model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
            cost=self._cost(response),
            tool_calls=_tool_calls(message),
            finish_reason=(getattr(choices[0], "finish_reason", None) or None) if choices else None,
        )

    def _failed(self, error: str, t0: float) -> Completion:
        return Completion(
            text="", model=self.model, latency_s=time.perf_counter() - t0, error=error
        )

    @staticmethod
    def _cost(response: Any) -> float | None:
        """USD from litellm's price map; None for models it does not know (it raises for those)."""
        try:
            cost = _litellm().completion_cost(completion_response=response)
        except Exception:
            return None
        return float(cost) if cost is not None else None

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter around the nominal delay (0.5x to 1.5x)."""
        return self.backoff_s * (2 ** (attempt - 1)) * self._rng.uniform(0.5, 1.5)

    # -- keys, loops, diagnostics ----------------------------------------------------------

    def _api_key(self) -> str | None:
        """The key, read now from the environment; never kept on the object."""
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise BackendError(
                    f"environment variable {self.api_key_env} (named by `api_key_env`) is not "
                    f"set; export it or fix `api_key_env` in the config"
                )
            return key
        return NO_KEY if self.api_base else None

    def _get_semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._semaphore_loop = loop
        return self._semaphore

    def _diagnose(self, e: BaseException, api_key: str | None) -> str:
        where = (
            f"litellm endpoint {self.api_base}" if self.api_base else f"litellm model {self.model}"
        )
        status = getattr(e, "status_code", None)
        cause = _connection_cause(e)
        if cause is not None:
            return f"{where} is unreachable ({cause}); start the server or fix `api_base` in the config"
        if _is_timeout(e):
            return (
                f"{where} did not answer within {min(self.timeout_s, 10.0):g} s; check the server "
                f"or raise `timeout_s`"
            )
        if status in (401, 403):
            source = (
                f"the key in ${self.api_key_env}" if self.api_key_env else "no key (`api_key_env`)"
            )
            return (
                f"{where} rejected {source} (HTTP {status}); set a valid key or fix `api_key_env`"
            )
        if status == 404:
            return (
                f"{where} answered HTTP 404 for model {self.model!r}; fix `model` or `api_base` "
                f"in the config"
            )
        return f"{where} failed a test request: {_one_line(e, api_key)}"


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


def _retryable(e: BaseException) -> bool:
    """Connection errors, timeouts, 408/409/425/429 and 5xx are worth another try; 4xx are not."""
    status = getattr(e, "status_code", None)
    if _connection_cause(e) is not None or _is_timeout(e):
        return True
    if not isinstance(status, int):
        return True
    return status in _RETRYABLE_STATUS or status >= 500


def _chain(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen and len(seen) < 16:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _connection_cause(e: BaseException) -> str | None:
    """A short reason if the request never reached a server, else None."""
    names = [type(x).__name__ for x in _chain(e)]
    for x in _chain(e):
        if isinstance(x, ConnectionRefusedError):
            return "connection refused"
        if isinstance(x, OSError) and x.errno in (-2, -3, -5):  # getaddrinfo failures
            return "host name not found"
    if any(n in ("APIConnectionError", "ConnectError", "ClientConnectorError") for n in names):
        return "connection error"
    return None


def _is_timeout(e: BaseException) -> bool:
    return any(isinstance(x, TimeoutError) or "Timeout" in type(x).__name__ for x in _chain(e))


def _one_line(e: BaseException, api_key: str | None) -> str:
    """`Type: message` on one line, shortened, with the key (if any) blanked out."""
    text = f"{type(e).__name__}: {e}"
    if api_key and api_key != NO_KEY:
        text = text.replace(api_key, "***")
    text = " ".join(text.split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text
