"""Per-run budgets: teacher tokens, cost and wall time, checked before each round of the loop.

A round is the unit a budget stops: the check runs as `plan_round` begins, before the round
poses a problem or calls a model, so a stopped run's last checkpoint is the end of the round
before and `--resume` with a higher limit starts the next round as if nothing had happened. A
round in progress always finishes, so spending can pass a limit by up to one round's worth.

Spending is read from the store (every call is a turn), so it survives a kill and a resume.
Wall time is the loop's own clock, kept in the loop state: each node adds the seconds since the
node before it finished, so a resumed run adds up its sessions; the time between a kill and its
resume, and the part of a node cut short by a kill, are not counted.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pedagogy.config import BudgetConfig
from pedagogy.errors import BudgetExhausted
from pedagogy.memory.base import Store
from pedagogy.memory.records import UsageRecord

FREE_BACKENDS = frozenset({"scripted", "transformers"})
"""Backends that run on this machine: their calls cost no money, though they store no cost."""

FLAGS = {
    "teacher_tokens": "--budget-teacher-tokens",
    "cost_usd": "--budget-cost-usd",
    "wall_seconds": "--budget-wall-seconds",
}
"""The `pedagogy run` option that sets each budget (also on `--resume`)."""


@dataclass
class Usage:
    """Calls, tokens and cost of one group of calls (a role, a role in an arm)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """USD of the calls whose cost is known (local models' calls cost nothing)."""
    cost_unknown: int = 0
    """Calls to a priced backend (an API) that came back without a cost: not in `cost`."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, row: UsageRecord) -> None:
        self.calls += row.calls
        self.prompt_tokens += row.prompt_tokens
        self.completion_tokens += row.completion_tokens
        self.cost += row.cost or 0.0
        if row.backend not in FREE_BACKENDS:
            self.cost_unknown += row.cost_unknown

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "cost": self.cost,
            "cost_unknown": self.cost_unknown,
        }


def total(rows: Iterable[UsageRecord], agent: str | None = None) -> Usage:
    """The usage of `rows` added up (only `agent`'s, when given)."""
    usage = Usage()
    for row in rows:
        if agent is None or row.agent == agent:
            usage.add(row)
    return usage


@dataclass
class Spent:
    """What a run has spent against its budgets."""

    teacher_tokens: int
    cost_usd: float
    cost_unknown: int
    """Calls of unknown price, left out of `cost_usd`."""
    wall_seconds: float

    @classmethod
    def of(cls, store: Store, run_id: str, wall_seconds: float) -> Spent:
        rows = store.usage(run_id)
        every = total(rows)
        return cls(total(rows, "teacher").tokens, every.cost, every.cost_unknown, wall_seconds)


def _describe(name: str, spent: float, limit: float) -> str:
    if name == "teacher_tokens":
        return f"teacher_tokens: {spent:,.0f} tokens spent of {limit:,.0f}"
    if name == "cost_usd":
        return f"cost_usd: ${spent:,.4f} spent of ${limit:,.4f}"
    return f"wall_seconds: {spent:,.0f} s spent of {limit:,.0f} s"


@dataclass
class BudgetGuard:
    """The loop's clock and its budget check (one per process; the clock's total is in the
    loop state as `elapsed_s`)."""

    mark: float = field(default_factory=time.monotonic)
    warned: bool = False

    def elapsed(self, state: dict[str, Any]) -> float:
        """Seconds the loop has run: the stored total plus this process's time since its last
        node finished."""
        return float(state.get("elapsed_s") or 0.0) + time.monotonic() - self.mark

    def lap(self, state: dict[str, Any]) -> float:
        """`elapsed`, and restart the clock (a node has finished)."""
        seconds = self.elapsed(state)
        self.mark = time.monotonic()
        return seconds

    def check(
        self,
        budget: BudgetConfig,
        store: Store,
        run_id: str,
        state: dict[str, Any],
        round_: int,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> None:
        """Raise `BudgetExhausted` if a limit is reached (spent >= limit), naming the budget,
        spent vs limit and the option that raises it. Warns once per process when a cost budget
        is set and some calls' cost is unknown (they are not counted)."""
        if (
            budget.teacher_tokens is None
            and budget.cost_usd is None
            and budget.wall_seconds is None
        ):
            return
        spent = Spent.of(store, run_id, self.elapsed(state))
        if budget.cost_usd is not None and spent.cost_unknown and not self.warned:
            self.warned = True
            message = (
                f"budget.cost_usd: {spent.cost_unknown} model call(s) of unknown price are not "
                f"counted (${spent.cost_usd:.4f} counted so far); the cost budget cannot stop "
                "what it cannot see: give the model a price (litellm.register_model) or bound "
                "the run by budget.teacher_tokens"
            )
            warnings.warn(message, stacklevel=2)
            emit("budget_warning", {"round": round_, "message": message})
        for name in ("teacher_tokens", "cost_usd", "wall_seconds"):
            limit = getattr(budget, name)
            used = getattr(spent, name)
            if limit is None or used < limit:
                continue
            unknown = (
                f" ({spent.cost_unknown} call(s) of unknown price not counted)"
                if name == "cost_usd" and spent.cost_unknown
                else ""
            )
            message = (
                f"budget exhausted before round {round_}: {_describe(name, used, limit)}{unknown}; "
                f"continue with `pedagogy run --resume {run_id} {FLAGS[name]} N` (N above the "
                "spent amount)"
            )
            emit(
                "budget_exhausted", {"round": round_, "budget": name, "spent": used, "limit": limit}
            )
            raise BudgetExhausted(message, name, used, limit)
