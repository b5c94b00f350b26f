"""Episodes and turns: recording a round at once onto the run's hash chain, reading them back,
and reading the chain for the audit."""

from __future__ import annotations

import heapq
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from pedagogy.errors import StoreError
from pedagogy.memory import schema as S
from pedagogy.memory.chain import SNAPSHOT_TABLES, TABLES, ChainWriter, audit_key
from pedagogy.memory.records import (
    CallAttemptRecord,
    ChainHeadRecord,
    ChainLinkRecord,
    DecisionRecord,
    EpisodeFilter,
    EpisodePage,
    EpisodeRecord,
    ExplanationRecord,
    ToolCallRecord,
    TurnRecord,
    VerdictRecord,
)
from pedagogy.memory.store_core import StoreCore
from pedagogy.memory.store_rows import _chunks, _now, _record, _row, _to_db, _turn

_CHILDREN = ("turns", "verdicts", "explanations", "tool_calls")


def _chain_rows(
    chain: ChainWriter,
    turns: Sequence[TurnRecord],
    episode_id: str | None,
    tool_calls: Sequence[ToolCallRecord] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for `turns` (each followed by its call attempts, then its `tool_calls`), linked onto
    `chain`; sets each one's id (if unset), episode id and hash. Returns the turn rows, the
    tool-call rows and the call-attempt rows."""
    rows, call_rows, attempt_rows = [], [], []
    calls_of: dict[str, list[ToolCallRecord]] = defaultdict(list)
    for call in tool_calls:
        calls_of[call.turn_id].append(call)
    for turn in turns:
        turn.id = turn.id or uuid.uuid4().hex
        turn.episode_id = episode_id
        row = _row(
            turn,
            ("attempts",),
            run_id=chain.run_id,
            latency_s=float(turn.latency_s),
            detail=turn.detail or None,
        )
        turn.hash = chain.link("turns", row)
        rows.append(row)
        for attempt in turn.attempts:
            attempt.turn_id = turn.id
            attempt.id = attempt.id or f"{turn.id}:{attempt.n}"
            row = _row(attempt, run_id=chain.run_id, created_at=_to_db(attempt.created_at))
            attempt.hash = chain.link("call_attempts", row)
            attempt_rows.append(row)
        for call in calls_of.pop(turn.id, []):
            call.id = call.id or uuid.uuid4().hex
            call.episode_id = episode_id
            row = _row(call, run_id=chain.run_id, latency_s=float(call.latency_s))
            call.hash = chain.link("tool_calls", row)
            call_rows.append(row)
    if calls_of:
        raise StoreError(
            f"tool call(s) of turn {next(iter(calls_of))!r}, which is not among the turns "
            "recorded with them; record a tool call with the episode of the turn that made it"
        )
    return rows, call_rows, attempt_rows


def _tagged(rows: Any, order: int, table: str) -> Iterator[tuple[int, int, str, Any]]:
    for r in rows:
        yield r.chain_index, order, table, r


class EpisodesMixin(StoreCore):
    """Episodes with their turns, tool calls, verdicts and explanations, and reading the chain."""

    def record_episodes(self, episodes: Sequence[EpisodeRecord]) -> None:
        if not episodes:
            return
        by_run: dict[str, list[EpisodeRecord]] = defaultdict(list)
        for e in episodes:
            by_run[e.run_id].append(e)
        with self._writing("record episodes") as conn:
            chains = {run_id: self._lock_chain(conn, run_id) for run_id in sorted(by_run)}
            for run_id, batch in by_run.items():
                self._record_run_episodes(conn, run_id, batch, chains[run_id])

    def record_turns(
        self, run_id: str, turns: Sequence[TurnRecord], decisions: Sequence[DecisionRecord] = ()
    ) -> None:
        if not turns and not decisions:
            return
        t = S.turns
        with self._writing("record turns") as conn:
            runs = {d.run_id for d in decisions} | ({run_id} if turns else set())
            chains = {r: self._lock_chain(conn, r) for r in sorted(runs)}
            if turns:
                for turn in turns:
                    turn.id = turn.id or uuid.uuid4().hex
                stored: set[str] = set()
                for chunk in _chunks([turn.id for turn in turns]):
                    stored.update(conn.scalars(select(t.c.id).where(t.c.id.in_(chunk))))
                fresh = list({turn.id: turn for turn in turns if turn.id not in stored}.values())
                rows, _, attempts = _chain_rows(chains[run_id], fresh, None)
                self._insert_many(conn, t, rows)
                self._insert_many(conn, S.call_attempts, attempts)
            self._link_decisions(conn, decisions, chains)
            self._save_chains(conn, chains)

    def turns_outside_episodes(self, run_id: str) -> list[TurnRecord]:
        t = S.turns
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            rows = conn.execute(
                select(t)
                .where(t.c.run_id == run_id, t.c.episode_id.is_(None))
                .order_by(t.c.chain_index)
            )
            return [_turn(r) for r in rows]

    def _record_run_episodes(
        self, conn: Connection, run_id: str, batch: list[EpisodeRecord], chain: ChainWriter
    ) -> None:
        t = S.episodes
        rounds = sorted({e.round for e in batch})
        keys = select(t.c.round, t.c["index"]).where(t.c.run_id == run_id, t.c.round.in_(rounds))
        stored = {(rnd, idx) for rnd, idx in conn.execute(keys)}
        fresh: list[EpisodeRecord] = []
        for e in batch:
            if (e.round, e.index) not in stored:
                stored.add((e.round, e.index))
                fresh.append(e)
        if not fresh:
            return
        unchained = self._require_problems(conn, run_id, [e.problem_id for e in fresh])
        now = _now()
        ep_rows, turn_rows, call_rows, verdict_rows, expl_rows = [], [], [], [], []
        attempt_rows: list[dict[str, Any]] = []
        for e in fresh:
            created = _to_db(e.created_at) if e.created_at else now
            ep_rows.append(_row(e, _CHILDREN, run_id=run_id, created_at=created))
            rows, calls, attempts = _chain_rows(chain, e.turns, e.id, e.tool_calls)
            turn_rows += rows
            call_rows += calls
            attempt_rows += attempts
            verdict_rows += [_row(v, episode_id=e.id) for v in e.verdicts]
            # The shown text lives in its teacher turn's detail (ExplanationRecord.text).
            expl_rows += [_row(x, ("text",), episode_id=e.id) for x in e.explanations]
        for table, rows in (
            (S.episodes, ep_rows),
            (S.turns, turn_rows),
            (S.tool_calls, call_rows),
            (S.call_attempts, attempt_rows),
        ):
            self._insert_many(conn, table, rows)
        self._insert_links(conn, S.verdicts, verdict_rows, chain)
        self._insert_links(conn, S.explanations, expl_rows, chain)
        self._chain_problems(conn, chain, unchained)
        self._snapshot(conn, chain, "episodes", ep_rows)
        self._save_chains(conn, {run_id: chain})

    def _chain_problems(self, conn: Connection, chain: ChainWriter, ids: list[str]) -> None:
        """Chain a copy of each problem of `ids`, which the run has not chained yet (a problem is
        shared by the runs that pose it: each run chains it once)."""
        p = S.problems
        rows: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            for r in conn.execute(select(p).where(p.c.id.in_(chunk))):
                rows[r.id] = dict(r._mapping)
        self._snapshot(conn, chain, "problems", [rows[i] for i in ids if i in rows])

    def _require_problems(self, conn: Connection, run_id: str, ids: list[str]) -> list[str]:
        """Of the problems `ids`, those the run has not chained yet, in order; raises StoreError
        when one is not stored. One query for both: it runs for every batch of episodes."""
        p, s = S.problems, S.snapshots
        wanted = list(dict.fromkeys(ids))
        chained = (s.c.run_id == run_id) & (s.c.subject == "problems") & (s.c.subject_id == p.c.id)
        query = select(p.c.id, s.c.subject_id).select_from(p.outerjoin(s, chained))
        found: dict[str, bool] = {}
        for chunk in _chunks(wanted):
            for problem_id, chained_id in conn.execute(query.where(p.c.id.in_(chunk))):
                found[problem_id] = found.get(problem_id, False) or chained_id is not None
        missing = [i for i in wanted if i not in found]
        if missing:
            raise StoreError(
                f"episodes refer to {len(missing)} problem(s) not stored in {self.url} "
                f"(first: {missing[0]!r}); call store.add_problems(...) before record_episodes"
            )
        return [i for i in wanted if not found[i]]

    def _attach_children(self, conn: Connection, eps: list[EpisodeRecord], where: Any) -> None:
        """Fill turns, tool calls, verdicts and explanations of `eps`; `where` selects them by
        episode_id."""
        by_id = {e.id: e for e in eps}
        t, v, x, c = S.turns, S.verdicts, S.explanations, S.tool_calls
        for r in conn.execute(select(t).where(where(t)).order_by(t.c.chain_index)):
            by_id[r.episode_id].turns.append(_turn(r))
        for r in conn.execute(select(c).where(where(c)).order_by(c.c.chain_index)):
            by_id[r.episode_id].tool_calls.append(_record(ToolCallRecord, r))
        for e in eps:
            e.turns.sort(key=lambda turn: turn.seq)
        for r in conn.execute(select(v).where(where(v)).order_by(v.c.id)):
            by_id[r.episode_id].verdicts.append(_record(VerdictRecord, r))
        shown = {turn.id: turn.detail.get("shown") for e in eps for turn in e.turns}
        for r in conn.execute(select(x).where(where(x)).order_by(x.c.id)):
            by_id[r.episode_id].explanations.append(
                _record(ExplanationRecord, r, text=shown.get(r.turn_id))
            )

    def episodes(
        self, run_id: str, round: int | None = None, with_turns: bool = False
    ) -> list[EpisodeRecord]:
        t = S.episodes
        query = select(t).where(t.c.run_id == run_id)
        if round is not None:
            query = query.where(t.c.round == round)
        with self._engine.connect() as conn:
            eps = [
                _record(EpisodeRecord, r)
                for r in conn.execute(query.order_by(t.c.round, t.c["index"]))
            ]
            if with_turns and eps:
                ids = query.with_only_columns(t.c.id).scalar_subquery()
                self._attach_children(conn, eps, lambda table: table.c.episode_id.in_(ids))
        return eps

    def episodes_page(
        self,
        run_id: str,
        flt: EpisodeFilter | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 50,
    ) -> EpisodePage:
        """The next `limit` episodes of the run after (round, index) `after`, filtered, paged by
        key through the (run_id, round, index) unique index: page 1,000 of a 100k-episode run
        costs what page 1 does. Turns are not loaded."""
        e, flt = S.episodes, flt or EpisodeFilter()
        query = select(e).where(e.c.run_id == run_id)
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
        mine = e.c.run_id == run_id
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            rows = [_record(EpisodeRecord, r) for r in conn.execute(query)]
            arms = list(conn.scalars(select(e.c.arm).where(mine).distinct().order_by(e.c.arm)))
            rounds = list(
                conn.scalars(select(e.c.round).where(mine).distinct().order_by(e.c.round))
            )
        more = len(rows) > limit
        rows = rows[:limit]
        last = (rows[-1].round, rows[-1].index) if more and rows else None
        return EpisodePage(rows, last, arms, rounds)

    def get_episode(self, episode_id: str) -> EpisodeRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(S.episodes).where(S.episodes.c.id == episode_id)).first()
            if row is None:
                raise StoreError(
                    f"unknown episode id {episode_id!r} in {self.url}; list a run's episodes "
                    "with `pedagogy runs`"
                )
            ep = _record(EpisodeRecord, row)
            self._attach_children(conn, [ep], lambda table: table.c.episode_id == episode_id)
        return ep

    def done_episode_indices(self, run_id: str, round: int) -> set[int]:
        t = S.episodes
        with self._engine.connect() as conn:
            return set(
                conn.scalars(select(t.c["index"]).where(t.c.run_id == run_id, t.c.round == round))
            )

    def tool_calls(
        self, episode_id: str | None = None, *, run_id: str | None = None
    ) -> list[ToolCallRecord]:
        """The tool calls of one episode, or of a whole run, in the order they were made."""
        c = S.tool_calls
        if (episode_id is None) == (run_id is None):
            raise StoreError("tool_calls needs exactly one of episode_id or run_id")
        with self._engine.connect() as conn:
            if run_id is not None:
                self._require_run(conn, run_id)
                query = select(c).where(c.c.run_id == run_id)
            else:
                query = select(c).where(c.c.episode_id == episode_id)
            rows = conn.execute(query.order_by(c.c.run_id, c.c.chain_index))
            return [_record(ToolCallRecord, r) for r in rows]

    def finish_reasons(self, run_id: str) -> dict[str, dict[str, int]]:
        """Per agent, how many of the run's turns stopped for each reason (`detail
        ["finish_reason"]`: "stop", "length" = cut at max_tokens, ...); turns that do not say
        are left out."""
        t = S.turns
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        query = select(t.c.agent, t.c.detail).where(t.c.run_id == run_id, t.c.detail.is_not(None))
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            for agent, detail in conn.execute(query):
                reason = detail.get("finish_reason") if isinstance(detail, dict) else None
                if isinstance(reason, str):
                    counts[agent][reason] += 1
        return {agent: dict(sorted(r.items())) for agent, r in sorted(counts.items())}

    def call_attempts(self, run_id: str) -> list[CallAttemptRecord]:
        """The attempts of the run's calls that needed more than one, in the order they were
        recorded (`call_attempts`, migration 0007)."""
        a = S.call_attempts
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            rows = conn.execute(select(a).where(a.c.run_id == run_id).order_by(a.c.chain_index))
            return [_record(CallAttemptRecord, r) for r in rows]

    def verify_chain(self, run_id: str) -> list[str]:
        """Ids of links whose stored hash does not match, each checked against the stored hash
        before it: an edited row is reported alone, a deleted one by its successor (or, at the
        end of the chain, by the last turn or tool call left). Turns and tool calls by id, other
        rows as "table:id". `pedagogy.memory.audit.verify_run` says what happened to each."""
        from pedagogy.memory.audit import chain_breaks

        return chain_breaks(self, run_id, audit_key())

    def chain_head(self, run_id: str) -> ChainHeadRecord | None:
        """The end of the run's hash chain; None if its row is missing."""
        h = S.chain_heads
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            row = conn.execute(select(h).where(h.c.run_id == run_id)).first()
        return None if row is None else _record(ChainHeadRecord, row, keyed=bool(row.keyed))

    def chain_links(self, run_id: str) -> Iterator[ChainLinkRecord]:
        """Every row of the run's chained tables, by chain index (then in `chain.TABLES` order)."""
        ep, job = S.episodes, S.training_jobs
        episodes = select(ep.c.id).where(ep.c.run_id == run_id)
        jobs = select(job.c.id).where(job.c.run_id == run_id)
        in_run = {
            "turns": lambda t: t.c.run_id == run_id,
            "tool_calls": lambda t: t.c.run_id == run_id,
            "verdicts": lambda t: t.c.episode_id.in_(episodes),
            "explanations": lambda t: t.c.episode_id.in_(episodes),
            "decisions": lambda t: t.c.run_id == run_id,
            "dataset_items": lambda t: t.c.job_id.in_(jobs),
            "call_attempts": lambda t: t.c.run_id == run_id,
            "snapshots": lambda t: t.c.run_id == run_id,
        }
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            streams = []
            for order, name in enumerate(TABLES):
                table = S.metadata.tables[name]
                query = select(table).where(in_run[name](table))
                query = query.order_by(table.c.chain_index, table.c.id)
                rows = conn.execute(query)
                # the turns stream; the others, fewer, are fetched before the turns are read
                streams.append(_tagged(rows if name == "turns" else rows.all(), order, name))
            for index, _, name, r in heapq.merge(*streams, key=lambda link: link[:2]):
                row = dict(r._mapping)
                del row["chain_index"]
                yield ChainLinkRecord(name, row["id"], index, row.pop("hash"), row)

    def chain_counts(self, run_id: str) -> dict[str, int]:
        """The run's chained rows per table (chain.TABLES), and its snapshots per table they copy
        as "snapshots:<table>" (`chain.chain_summary`)."""
        counts: dict[str, int] = {}
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            for name in TABLES:
                table = S.metadata.tables[name]
                query = select(func.count()).select_from(table)
                if "run_id" in table.c:
                    query = query.where(table.c.run_id == run_id)
                elif name == "dataset_items":
                    jobs = select(S.training_jobs.c.id).where(S.training_jobs.c.run_id == run_id)
                    query = query.where(table.c.job_id.in_(jobs))
                else:
                    episodes = select(S.episodes.c.id).where(S.episodes.c.run_id == run_id)
                    query = query.where(table.c.episode_id.in_(episodes))
                counts[name] = int(conn.scalar(query) or 0)
            s = S.snapshots
            query = select(s.c.subject, func.count()).where(s.c.run_id == run_id)
            for subject, n in conn.execute(query.group_by(s.c.subject)):
                counts[f"snapshots:{subject}"] = int(n)
        return counts

    def audited_rows(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """The run's rows of chain.SNAPSHOT_TABLES as now stored, per table: what `audit verify`
        compares with their last snapshots. Problems: those the run chained or its episodes
        pose."""
        out: dict[str, list[dict[str, Any]]] = {}
        s, e, p = S.snapshots, S.episodes, S.problems
        with self._engine.connect() as conn:
            self._require_run(conn, run_id)
            for name in SNAPSHOT_TABLES:
                table = S.metadata.tables[name]
                if name == "runs":
                    where = table.c.id == run_id
                elif name == "problems":
                    chained = select(s.c.subject_id).where(
                        s.c.run_id == run_id, s.c.subject == "problems"
                    )
                    posed = select(e.c.problem_id).where(e.c.run_id == run_id)
                    where = p.c.id.in_(chained) | p.c.id.in_(posed)
                else:
                    where = table.c.run_id == run_id
                rows = conn.execute(select(table).where(where).order_by(table.c.id))
                out[name] = [dict(r._mapping) for r in rows]
        return out
