"""What went wrong in one attempt of the litellm backend: status, one line, whether to retry.

Kept apart from `pedagogy.backends.litellm` (the backend's call loop) so that module stays
small; nothing here imports litellm.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pedagogy.backends.base import Completion

NO_KEY = "no-key"
"""Sent as the API key to an `api_base` when no `api_key_env` is configured."""

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_MAX_ERROR_CHARS = 300


@dataclass
class Failure:
    """What went wrong in one attempt."""

    error: BaseException | str
    line: str
    status: int | None = None
    retry_after_s: float | None = None
    retryable: bool = True
    misconfigured: bool = False
    """A refused connection, an unknown host, a rejected key or an unknown model: the check
    moves on to the next endpoint at once."""
    unreachable: bool = False
    """No response came (a refused connection, an unknown host, a dropped connection): `status`
    is None, and the endpoint's circuit breaker counts it."""
    responded: bool = True
    """A response came (an HTTP error, a body that is not JSON); False for a timeout or an
    unreachable endpoint."""

    @classmethod
    def of(cls, e: BaseException, api_key: str | None) -> Failure:
        status = getattr(e, "status_code", None)
        status = status if isinstance(status, int) else None
        # litellm reports a body it cannot parse, and a timeout, with a made-up status.
        unreadable = any(isinstance(x, ValueError) for x in _chain(e)[1:])
        cause = connection_cause(e)
        refused = cause not in (None, "connection error")
        line = one_line(e, api_key)
        # litellm gives a connection error status 500; no response came, so there is none.
        no_response = cause is not None or is_timeout(e)
        return cls(
            error=e,
            line=f"unreadable response: {line}" if unreadable else line,
            status=None if unreadable or no_response else status,
            retry_after_s=retry_after(e),
            retryable=retryable(e),
            misconfigured=refused or status in (401, 403, 404),
            unreachable=cause is not None,
            responded=not no_response,
        )


def empty_failure(completion: Completion) -> Failure | None:
    """A 200 answer with neither text nor tool calls is a failed attempt (an overloaded server's
    empty reply), retried like a 5xx."""
    if completion.text or completion.tool_calls:
        return None
    line = f"empty content (finish_reason {completion.finish_reason!r})"
    return Failure(error=line, line=line, status=200)


def retry_after(e: BaseException) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date) of the error's response."""
    for x in _chain(e):
        for headers in (
            getattr(getattr(x, "response", None), "headers", None),
            getattr(x, "litellm_response_headers", None),
            getattr(x, "headers", None),
        ):
            if not headers:
                continue
            try:
                value = headers.get("retry-after") or headers.get("Retry-After")
            except Exception:
                continue
            if value:
                return _seconds(str(value))
    return None


def _seconds(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def retryable(e: BaseException) -> bool:
    """Connection errors, timeouts, 408/409/425/429 and 5xx are worth another try; 4xx are not."""
    status = getattr(e, "status_code", None)
    if connection_cause(e) is not None or is_timeout(e):
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


def connection_cause(e: BaseException) -> str | None:
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


def is_timeout(e: BaseException) -> bool:
    return any(isinstance(x, TimeoutError) or "Timeout" in type(x).__name__ for x in _chain(e))


def one_line(e: BaseException, api_key: str | None) -> str:
    """`Type: message` on one line, shortened, with the key (if any) blanked out."""
    text = f"{type(e).__name__}: {e}"
    if api_key and api_key != NO_KEY:
        text = text.replace(api_key, "***")
    text = " ".join(text.split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text
