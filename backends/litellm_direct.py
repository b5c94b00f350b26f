"""The litellm backend's direct transport: the OpenAI chat API spoken to an `api_base` itself.

litellm's client path (its parameter mapping, the OpenAI SDK building an httpx request, its
response object) costs milliseconds of Python per call: at 64 calls in flight against a fast
server one event loop spends most of a core on it, and the server waits for the client. An
OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp, the test server) needs none of that
mapping: `transport: direct` sends the request body as the OpenAI API defines it over one
aiohttp session per event loop (connections kept alive, at most `max_concurrency` of them) and
reads the JSON answer into the attributes `LiteLLMBackend` reads from litellm's response.
Everything around the call is the backend's, unchanged: retries, Retry-After, fallbacks, the
circuit breaker, token accounting, `call_attempts`. litellm still prices each call, once
(`Prices`).

Only endpoints litellm would send to an OpenAI-compatible server qualify: a model named
`openai/...` or `hosted_vllm/...` with an `api_base`; the backend refuses `transport: direct`
for any other endpoint when it is built (`direct_problems`). litellm callbacks (logging
integrations) do not see direct calls; `transport: litellm` (the default) keeps them.

Failures are raised as exceptions that `litellm_errors.Failure` reads like litellm's own:
`HTTPStatusError` carries `status_code` and the response headers (Retry-After), a body that is
not JSON is chained to its `ValueError` (an unreadable response, no status), and a refused,
reset or dropped connection is an `APIConnectionError` chained to the aiohttp error (and so to
the `ConnectionRefusedError` under it), and no answer in time an `APITimeoutError`.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from pedagogy.backends.base import ChatRequest

if TYPE_CHECKING:
    import aiohttp

    from pedagogy.backends.litellm_endpoints import Endpoint

TRANSPORTS = ("litellm", "direct")
"""`LiteLLMBackend(transport=...)`: litellm's client (every provider), or this module's."""

DIRECT_PROVIDERS = ("openai/", "hosted_vllm/")
"""Model prefixes that litellm sends to an OpenAI-compatible `api_base` unchanged."""


def direct_problems(endpoints: list[Endpoint]) -> list[str]:
    """Why `transport: direct` cannot serve these endpoints ([] when it can)."""
    problems = []
    for e in endpoints:
        if not e.model.startswith(DIRECT_PROVIDERS) or not e.api_base:
            problems.append(
                f"transport 'direct' speaks the OpenAI chat API to an `api_base`; endpoint "
                f"{e.label!r} (model {e.model!r}, api_base {e.api_base!r}) is not one: give it "
                f"an `api_base` and a model named {' or '.join(p + '...' for p in DIRECT_PROVIDERS)}"
                ", or use transport 'litellm'"
            )
    return problems


class APIConnectionError(Exception):
    """No response came: a refused, reset or dropped connection (the aiohttp error is its
    `__cause__`)."""


class APITimeoutError(TimeoutError):
    """No answer within the call's timeout."""


class HTTPStatusError(Exception):
    """An HTTP error answer, or a 200 whose body is not an answer."""

    def __init__(self, message: str, status_code: int | None, headers: Any = None):
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers


def request_fields(request: ChatRequest) -> dict[str, Any]:
    """The request's OpenAI chat fields: what litellm is given, and what the direct transport
    sends (messages, max_tokens, temperature; seed, stop and tools when set)."""
    fields: dict[str, Any] = {
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.seed is not None:
        fields["seed"] = request.seed
    if request.stop:
        fields["stop"] = request.stop
    if request.tools:
        fields["tools"] = request.tools
        fields["tool_choice"] = "auto"
    return fields


def request_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The OpenAI chat-completions body litellm sends for this request (provider prefix off)."""
    return {"model": model.split("/", 1)[1], **request_fields(request)}


class DirectClient:
    """One aiohttp session per event loop, the calls, and their prices."""

    def __init__(self, max_concurrency: int):
        self.max_concurrency = max_concurrency
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self.prices = Prices()
        # sessions left open when the backend is dropped, or at exit, are closed then
        self._finalizer = weakref.finalize(self, _close_all, self._sessions)

    async def call(
        self, request: ChatRequest, endpoint: Endpoint, api_key: str | None, timeout: float
    ) -> SimpleNamespace:
        """One attempt: the response as attributes (`choices[0].message.content`, ...,
        `usage`, `_hidden_params["response_cost"]`), or an exception (see the module doc)."""
        import aiohttp

        session = self._session()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        url = f"{endpoint.api_base}/chat/completions"
        body = request_body(request, endpoint.model)
        try:
            async with session.post(
                url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                raw = await response.read()
                status, response_headers = response.status, response.headers
        except asyncio.TimeoutError as e:  # aiohttp's own timeouts are also connection errors
            raise APITimeoutError(f"{url} did not answer within {timeout:g} s") from e
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise APIConnectionError(f"{url}: {type(e).__name__}: {e}") from e
        if status != 200:
            raise HTTPStatusError(
                f"HTTP {status} from {url}: {_error_message(raw)}", status, response_headers
            )
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            # no status: a response that cannot be read is retried like a dropped one
            raise HTTPStatusError(
                f"HTTP 200 from {url} without an answer: {raw[:200]!r}", None, response_headers
            ) from (e if isinstance(e, ValueError) else ValueError(str(e)))
        usage = data.get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        return SimpleNamespace(
            choices=[
                SimpleNamespace(
                    message=SimpleNamespace(
                        content=message.get("content"),
                        tool_calls=[_tool_call(c) for c in message.get("tool_calls") or []],
                    ),
                    finish_reason=choice.get("finish_reason"),
                )
            ],
            usage=SimpleNamespace(prompt_tokens=prompt, completion_tokens=completion),
            _hidden_params={"response_cost": self.prices.cost(endpoint.model, prompt, completion)},
        )

    def _session(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            for old in [k for k in self._sessions if k.is_closed()]:
                _discard(self._sessions.pop(old))
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
                # the request's proxy settings are the environment's, as with litellm's client
                trust_env=True,
            )
            self._sessions[loop] = session
        return session

    def close(self) -> None:
        """Close every session's connections (a later call opens a new session)."""
        _close_all(self._sessions)


def _close_all(sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession]) -> None:
    while sessions:
        _, session = sessions.popitem()
        _discard(session)


def _discard(session: aiohttp.ClientSession) -> None:
    """Close a session's connections now, from any thread and whether its event loop runs,
    has finished or is closed: aiohttp's synchronous close of the connector (what its own
    garbage collection runs; `close()` is a coroutine that needs the session's loop)."""
    connector = session.connector
    session.detach()
    if connector is not None and not connector.closed:
        connector._close()


def _tool_call(call: dict[str, Any]) -> SimpleNamespace:
    function = call.get("function") or {}
    return SimpleNamespace(
        id=call.get("id"),
        function=SimpleNamespace(name=function.get("name"), arguments=function.get("arguments")),
    )


def _error_message(raw: bytes) -> str:
    """The OpenAI error body's message, else the body's start."""
    try:
        data = json.loads(raw)
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else error or data
        return str(message)[:300]
    except ValueError:
        return raw[:300].decode("utf-8", "replace") or "(empty body)"


class Prices:
    """Each call's USD from litellm's price map, once per call; None for a model it does not
    price (asked once per model and price map: `litellm.register_model` gives it one)."""

    def __init__(self) -> None:
        self._checked: dict[str, tuple[tuple[int, int], bool]] = {}

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        import litellm

        prices = getattr(litellm, "model_cost", None)
        key = (id(prices), len(prices) if isinstance(prices, dict) else 0)
        checked = self._checked.get(model)
        if checked is None or checked[0] != key:
            try:
                litellm.get_model_info(model=model)
                checked = (key, True)
            except Exception:  # litellm raises a bare Exception subclass for an unmapped model
                checked = (key, False)
            self._checked[model] = checked
        if not checked[1]:
            return None
        try:
            prompt, completion = litellm.cost_per_token(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        except Exception:
            return None
        return float(prompt) + float(completion)
