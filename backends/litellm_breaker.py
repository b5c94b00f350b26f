"""A circuit breaker per endpoint of the litellm backend: a dead endpoint is skipped, not retried.

Without it, every call of a backend whose primary endpoint is down first spends all its attempts
there (a refused connection, a backoff, again) before a fallback serves it. With it, after
`threshold` consecutive connection failures at an endpoint (no response at all: a refused
connection, an unknown host, a connection dropped before an answer), the endpoint's breaker
*opens*: calls skip it for `cooldown_s` and go straight to the next endpoint. After the cool-down
it is *half-open*: one call tries it (the probe) while the others still skip it. A response of
any kind (an HTTP error too: the server is up) closes the breaker; another connection failure
opens it again for a new cool-down.

Until an endpoint has answered once (at the start, and after its breaker opened), at most
`threshold` attempts go there, counting those that failed to connect: other calls (and the
retries of the failed ones) wait for its first answer (at most `LiteLLMBackend.first_answer_wait_s`,
a second) instead of each paying for a refused connection (`crowded`). A dead endpoint so costs
`threshold` failed attempts; a live one, that wait once (the startup check,
`LiteLLMBackend.check`, usually pays it).

The breaker only reroutes: a call whose endpoints are all open tries them all as before, so a
breaker never fails a call on its own. Each change of state is a `CircuitEvent`: kept in
`CircuitBreaker.events`, logged, and put in `detail["circuit"]` of the call during which it
happened (stored with that call's turn), beside the endpoints the call skipped.

Each worker process (`workers: N`) keeps a breaker of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from pedagogy.errors import BackendError

if TYPE_CHECKING:
    from pedagogy.backends.base import Completion

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "CircuitEvent"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
"""The states of one endpoint's breaker."""

Admission = Literal["go", "probe", "skip"]

_log = logging.getLogger("pedagogy.backends.litellm")


@dataclass(frozen=True)
class CircuitEvent:
    """One endpoint's breaker changed state."""

    endpoint: str
    """The endpoint's label (model@api_base, never a key)."""
    state: str
    """The new state: `open` (skipped from now on), `half_open` (one call probes it) or
    `closed` (used again)."""
    failures: int
    """Consecutive connection failures at the endpoint when it changed (0 when it closed)."""
    cooldown_s: float
    """How long the endpoint is skipped when it opened."""
    at: datetime
    """When it changed (UTC)."""

    def to_detail(self) -> dict[str, Any]:
        """The JSON form kept in a turn's `detail["circuit"]["events"]`."""
        return {
            "endpoint": self.endpoint,
            "state": self.state,
            "failures": self.failures,
            "cooldown_s": self.cooldown_s,
            "at": self.at.isoformat(),
        }


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    """Monotonic time it opened (or re-opened); None while closed."""
    probing: bool = False
    answered: bool = False
    """A response came since the backend started or the breaker last opened."""
    trials: int = 0
    """Attempts in flight at the endpoint while it has not answered."""


class CircuitBreaker:
    """The breakers of a backend's endpoints, by label; `threshold` 0 turns them off."""

    def __init__(
        self,
        threshold: int = 3,
        cooldown_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
            raise BackendError(
                f"breaker_threshold must be an integer >= 0 (consecutive connection failures "
                f"before an endpoint is skipped; 0 turns the breaker off), got {threshold!r}"
            )
        if not isinstance(cooldown_s, (int, float)) or cooldown_s <= 0:
            raise BackendError(
                f"breaker_cooldown_s must be a number of seconds > 0 (how long an endpoint is "
                f"skipped before one call probes it), got {cooldown_s!r}"
            )
        self.threshold = threshold
        self.cooldown_s = float(cooldown_s)
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self.events: list[CircuitEvent] = []
        """Every change of state so far, in order."""
        self._taken = 0

    def take_events(self) -> list[CircuitEvent]:
        """The changes of state since the last call (each handed out once): what the loop
        stores as decisions after each node."""
        new = self.events[self._taken :]
        self._taken = len(self.events)
        return new

    def state(self, endpoint: str) -> str:
        """`closed`, `open` (skipped) or `half_open` (its cool-down is over: the next call that
        reaches it probes it, or one is probing it now)."""
        c = self._circuits.get(endpoint)
        if c is None or c.opened_at is None:
            return CLOSED
        if c.probing or self._clock() - c.opened_at >= self.cooldown_s:
            return HALF_OPEN
        return OPEN

    def would_skip(self, endpoint: str) -> bool:
        """Whether a call reaching the endpoint now would skip it (no side effect)."""
        c = self._circuits.get(endpoint)
        if c is None or c.opened_at is None:
            return False
        return c.probing or self._clock() - c.opened_at < self.cooldown_s

    def admit(self, endpoint: str) -> tuple[Admission, CircuitEvent | None]:
        """What a call reaching the endpoint does: `go` (closed), `skip` (open, or another call
        is probing it) or `probe` (its cool-down is over: this call is the trial), with the
        event when it became half-open."""
        c = self._circuits.get(endpoint)
        if c is None or c.opened_at is None:
            return "go", None
        if c.probing or self._clock() - c.opened_at < self.cooldown_s:
            return "skip", None
        c.probing = True
        return "probe", self._event(endpoint, HALF_OPEN, c.failures)

    def unreachable(self, endpoint: str) -> CircuitEvent | None:
        """A connection failure at the endpoint; the event when its breaker opened."""
        if not self.threshold:
            return None
        c = self._circuits.setdefault(endpoint, _Circuit())
        c.failures += 1
        if c.probing or (c.opened_at is None and c.failures >= self.threshold):
            c.probing = False
            c.answered = False
            c.opened_at = self._clock()
            return self._event(endpoint, OPEN, c.failures)
        return None

    def reached(self, endpoint: str) -> CircuitEvent | None:
        """A response came from the endpoint (an answer or an HTTP error); the event when its
        breaker closed."""
        c = self._circuits.setdefault(endpoint, _Circuit())
        c.failures = 0
        c.probing = False
        c.answered = True
        if c.opened_at is None:
            return None
        c.opened_at = None
        return self._event(endpoint, CLOSED, 0)

    def crowded(self, endpoint: str) -> bool:
        """Whether a call should wait before trying the endpoint: it has not answered yet (since
        the start, or since its breaker last opened) and its trials in flight plus its
        connection failures so far reach `threshold`. A dead endpoint then costs exactly
        `threshold` failed attempts (a failed trial keeps its slot until the breaker opens, so
        no waiting call takes its place, nor the failed call's own retry); a live one, the wait
        for its first answer, once."""
        c = self._circuits.get(endpoint)
        return (
            self.threshold > 0
            and c is not None
            and not c.answered
            and c.opened_at is None
            and c.trials + c.failures >= self.threshold
        )

    def sending(self, endpoint: str) -> bool:
        """An attempt leaves for the endpoint; True when it counts as a trial (the endpoint has
        not answered yet): the caller then calls `sent` when the attempt is over."""
        if not self.threshold:
            return False
        c = self._circuits.setdefault(endpoint, _Circuit())
        if c.answered:
            return False
        c.trials += 1
        return True

    def sent(self, endpoint: str) -> None:
        """A trial attempt (`sending` said True) is over, whatever its outcome."""
        c = self._circuits.get(endpoint)
        if c is not None and c.trials > 0:
            c.trials -= 1

    def release(self, endpoint: str) -> None:
        """The probing call ended without an outcome (it was cancelled): let another call probe."""
        c = self._circuits.get(endpoint)
        if c is not None:
            c.probing = False

    def _event(self, endpoint: str, state: str, failures: int) -> CircuitEvent:
        event = CircuitEvent(endpoint, state, failures, self.cooldown_s, datetime.now(timezone.utc))
        self.events.append(event)
        if state == OPEN:
            _log.warning(
                "%s: %d consecutive connection failures; skipping it for %g s (circuit open)",
                endpoint,
                failures,
                self.cooldown_s,
            )
        else:
            _log.info("%s: circuit %s", endpoint, state.replace("_", "-"))
        return event


class CircuitNotes:
    """What the circuit breaker did during one call: kept in its `detail["circuit"]`."""

    __slots__ = ("events", "skipped")

    def __init__(self) -> None:
        self.events: list[CircuitEvent] = []
        self.skipped: list[str] = []

    def add(self, event: CircuitEvent | None) -> None:
        if event is not None:
            self.events.append(event)

    def put(self, completion: Completion) -> None:
        if self.skipped or self.events:
            note: dict[str, Any] = {}
            if self.skipped:
                note["skipped"] = self.skipped
            if self.events:
                note["events"] = [e.to_detail() for e in self.events]
            completion.detail["circuit"] = note
