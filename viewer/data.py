"""What the viewer's pages read: the store's own readers, plus one paged query of episodes.

Episodes are paged by key, not by offset: a page is the next `limit` episodes after the last
(round, index) shown, in that order, through the (run_id, round, index) unique index, so page
1,000 of a 100k-episode run costs what page 1 does. Filters narrow the same scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select

__all__ = ["OUTCOMES", "EpisodeFilter", "EpisodePage", "episode_page", "run_exists"]

OUTCOMES = ("correct_first", "correct_after_explanation", "wrong", "error")


@dataclass(frozen=True)
class EpisodeFilter:
    """The episodes list's filters; None: any."""

    round: int | None = None
    arm: str | None = None
    outcome: str | None = None
    explained: bool | None = None
    tool: bool | None = None
    """Whether the episode made a tool call (an acting student's)."""

    def query(self) -> dict[str, str]:
        """As query parameters (for the next page's link)."""
        out: dict[str, str] = {}
        if self.round is not None:
            out["round"] = str(self.round)
        if self.arm:
            out["arm"] = self.arm
        if self.outcome:
            out["outcome"] = self.outcome
        if self.explained is not None:
            out["explained"] = "yes" if self.explained else "no"
        if self.tool is not None:
            out["tool"] = "yes" if self.tool else "no"
        return out


@dataclass
class EpisodePage:
    rows: list[dict[str, Any]]
    after: tuple[int, int] | None
    """The (round, index) to continue after; None on the last page."""
    arms: list[str]
    rounds: list[int]


def episode_page(
    store: Any,
    run_id: str,
    flt: EpisodeFilter,
    after: tuple[int, int] | None = None,
    limit: int = 50,
) -> EpisodePage:
    """The next `limit` episodes of the run after (round, index) `after`, filtered."""
    from pedagogy.memory import schema as S

    e = S.episodes
    query = select(
        e.c.id,
        e.c.round,
        e.c["index"],
        e.c.arm,
        e.c.outcome,
        e.c.correct_first,
        e.c.correct_final,
        e.c.explained,
        e.c.student_version,
    ).where(e.c.run_id == run_id)
    if after is not None:
        r, i = after
        query = query.where(or_(e.c.round > r, and_(e.c.round == r, e.c["index"] > i)))
    if flt.round is not None:
        query = query.where(e.c.round == flt.round)
    if flt.arm:
        query = query.where(e.c.arm == flt.arm)
    if flt.outcome:
        query = query.where(e.c.outcome == flt.outcome)
    if flt.explained is not None:
        query = query.where(e.c.explained == flt.explained)
    if flt.tool is not None:
        called = select(S.tool_calls.c.id).where(S.tool_calls.c.episode_id == e.c.id).exists()
        query = query.where(called if flt.tool else ~called)
    query = query.order_by(e.c.round, e.c["index"]).limit(limit + 1)
    with store._engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
        arms = list(
            conn.scalars(select(e.c.arm).where(e.c.run_id == run_id).distinct().order_by(e.c.arm))
        )
        rounds = list(
            conn.scalars(
                select(e.c.round).where(e.c.run_id == run_id).distinct().order_by(e.c.round)
            )
        )
    more = len(rows) > limit
    rows = rows[:limit]
    last = (rows[-1]["round"], rows[-1]["index"]) if more and rows else None
    return EpisodePage(rows, last, arms, rounds)


def run_exists(store: Any, run_id: str) -> bool:
    from pedagogy.memory import schema as S

    with store._engine.connect() as conn:
        return conn.execute(select(S.runs.c.id).where(S.runs.c.id == run_id)).first() is not None
