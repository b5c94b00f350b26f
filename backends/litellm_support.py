"""What the litellm backend reads from litellm's own work instead of doing it again.

- `response_cost`: litellm prices every response it returns (its logging object's cost
  calculator, stored in `response._hidden_params["response_cost"]`, None for a model its price
  map does not know); the backend takes that number instead of calling `completion_cost` again.
- `unlogged`: after every call litellm builds a logging payload and hands it to its background
  logging worker, even when no callback is registered to read it. With no callback registered (`has_callbacks` is False) the backend
  makes its calls as litellm's own internal sub-calls, for which it skips that success and
  failure logging (the response, its usage and its price are made the same way). A callback
  that the user registers (`litellm.success_callback`, `litellm.callbacks`, ...) turns this off,
  so its logging still happens.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "service_callback",
    "_async_input_callback",
    "_async_success_callback",
    "_async_failure_callback",
)
"""litellm's module-level callback registries."""


def response_cost(response: Any) -> float | None:
    """The USD cost litellm computed for `response` when it received it; None when unknown."""
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict):
        cost = hidden.get("response_cost")
    else:
        cost = getattr(hidden, "response_cost", None)
    if cost is None:
        return None
    try:
        return float(cost)
    except (TypeError, ValueError):
        return None


def has_callbacks(litellm: Any) -> bool:
    """Whether any litellm callback (logging integration, custom logger) is registered."""
    return any(getattr(litellm, name, None) for name in _CALLBACK_LISTS)


def unlogged() -> AbstractContextManager[None]:
    """A context in which litellm calls are litellm's internal sub-calls (no success or failure
    logging); a context that does nothing when the installed litellm has no such notion."""
    factory = _internal_sub_call()
    return factory() if factory is not None else contextlib.nullcontext()


@functools.cache
def _internal_sub_call() -> Callable[[], AbstractContextManager[None]] | None:
    try:
        from litellm._internal_context import internal_sub_call
    except ImportError:
        return None
    return internal_sub_call
