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
- `Unpriced`: for a model its price map does not know (a local server's), litellm still tries to
  price every response: it walks its price map and generalisation rules, fails, and runs a
  zero-cost diagnostic, about a fifth of the client's CPU per call, to stamp None each time.
  Once a model is known to have no price (`litellm.get_model_info` does not know it and
  litellm priced a response of it at None) its later calls are made in `unpriced()`, where
  litellm's calculator answers None at once. The answer is checked again whenever litellm's price
  map changes (`litellm.register_model` gives the model a price: it is priced from then on).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
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


_UNPRICED: ContextVar[bool] = ContextVar("pedagogy_litellm_unpriced", default=False)


class Unpriced:
    """Which models litellm has no price for (`model` -> the price map they were checked in)."""

    def __init__(self) -> None:
        self._models: dict[str, tuple[int, int]] = {}

    @staticmethod
    def _map(litellm: Any) -> tuple[int, int]:
        prices = getattr(litellm, "model_cost", None)
        return id(prices), len(prices) if isinstance(prices, dict) else 0

    def known(self, litellm: Any, model: str) -> bool:
        """Whether `model` is known to have no price in litellm's current price map."""
        return self._models.get(model) == self._map(litellm)

    def saw(self, litellm: Any, model: str, cost: float | None) -> None:
        """Note the cost litellm gave a response of `model`: None from a model its price map does
        not know makes the model's later calls skip litellm's pricing (`unpriced`)."""
        if cost is not None or self.known(litellm, model) or not _skip_installed(litellm):
            return
        try:
            litellm.get_model_info(model=model)
        except Exception:  # litellm raises a bare Exception subclass for an unmapped model
            self._models[model] = self._map(litellm)


@contextlib.contextmanager
def unpriced() -> Iterator[None]:
    """A context in which litellm's cost calculator answers None without pricing."""
    token = _UNPRICED.set(True)
    try:
        yield
    finally:
        _UNPRICED.reset(token)


@functools.cache
def _skip_installed(litellm: Any) -> bool:
    """Wrap litellm's per-call cost calculator (once) so that it answers None inside `unpriced()`
    and runs as before everywhere else; False when this litellm has no such calculator."""
    try:
        from litellm.litellm_core_utils.litellm_logging import Logging
    except ImportError:
        return False
    original = Logging.__dict__.get("response_cost_calculator")
    if not callable(original):
        return False
    if getattr(original, "_pedagogy_unpriced", False):
        return True

    @functools.wraps(original)
    def response_cost_calculator(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _UNPRICED.get():
            return None
        return original(self, *args, **kwargs)

    response_cost_calculator._pedagogy_unpriced = True  # type: ignore[attr-defined]
    Logging.response_cost_calculator = response_cost_calculator  # type: ignore[method-assign]
    return True
