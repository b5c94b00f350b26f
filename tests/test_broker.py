"""The round-level intervention broker, alone and inside a real loop."""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pedagogy.agents.intervention import build_policy
from pedagogy.cli import app
from pedagogy.domains.base import Problem
from pedagogy.graphs.broker import InterventionBroker, episode_id
from pedagogy.memory.store import open_store


def _problem(i: int) -> Problem:
    return Problem(domain="test", skill="add", level=0, prompt=f"{i}+1=", answer=str(i + 1))


async def test_broker_decides_once_when_every_episode_has_settled():
    calls: list[list] = []
    broker = InterventionBroker(
        build_policy("always"),
        2,
        {"a", "b", "c", "d"},
        lambda p: (f"A:{p.answer}", None),
        calls.append,
    )

    async def wrong(eid: str, i: int) -> bool:
        await asyncio.sleep(0.01 * (4 - i))  # arrive out of plan order
        try:
            return await broker.decide(eid, i, _problem(i), "A:0")
        finally:
            await broker.finished(eid)

    async def right(eid: str) -> None:  # a correct first attempt never hands one in
        await broker.finished(eid)

    got = await asyncio.wait_for(
        asyncio.gather(wrong("a", 0), right("b"), wrong("c", 2), wrong("d", 3)), timeout=5
    )
    assert [got[0], got[2], got[3]] == [True, True, False]  # budget 2, in plan order
    assert len(calls) == 1 and [d.candidate_id for d in calls[0]] == ["a", "c", "d"]


async def test_broker_reuses_recorded_decisions_without_asking_the_policy():
    calls: list[list] = []
    broker = InterventionBroker(
        build_policy("never"), None, {"a"}, lambda p: ("", None), calls.append, {"a": True}
    )
    assert await asyncio.wait_for(broker.decide("a", 0, _problem(0), "A:0"), timeout=5) is True
    assert calls == []


def test_episode_ids_are_stable_per_plan_position():
    assert episode_id("r", 1, 0) == episode_id("r", 1, 0) != episode_id("r", 1, 1)


@pytest.mark.slow
def test_utility_policy_spends_exactly_its_budget_and_decisions_are_in_sql(quick_config, tmp_path):
    budget = 5
    cfg = quick_config(
        episodes={"per_round": 48, "explain_budget": budget, "intervention": "utility"}
    )
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    db = tmp_path / "work" / "pedagogy.db"
    store = open_store(str(db))
    (run,) = store.list_runs()
    for round_ in (1, 2):
        eps = store.episodes(run.id, round_)
        wrong = [e for e in eps if not e.correct_first]
        decisions = store.decisions(run.id, round_, "intervention")
        assert sorted(d.subject for d in decisions) == sorted(e.id for e in wrong)
        assert sum(e.explained for e in eps) == min(budget, len(wrong))
        chosen = {d.subject for d in decisions if d.chosen}
        assert chosen == {e.id for e in eps if e.explained}
        assert all(d.policy == "utility" and d.value is not None for d in decisions)
        # The utility ranking: every explained attempt scored at least as high as any other,
        # except repeats of a problem already explained this round (distinct problems first).
        if chosen and len(chosen) < len(decisions):
            low = min(d.value for d in decisions if d.chosen)
            passed = [d for d in decisions if not d.chosen]
            assert all(
                d.value <= low or "repeats a problem ranked higher" in d.detail["reason"]
                for d in passed
            )
            problem_of = {e.id: e.problem_id for e in eps}
            explained = [problem_of[s] for s in chosen]
            distinct_wrong = {e.problem_id for e in wrong}
            assert len(set(explained)) == min(len(explained), len(distinct_wrong))
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        per_round = conn.execute(
            sa.text(
                "SELECT round, SUM(CASE WHEN chosen THEN 1 ELSE 0 END) FROM decisions"
                " WHERE run_id = :r AND kind = 'intervention' GROUP BY round ORDER BY round"
            ),
            {"r": run.id},
        ).all()
    assert [tuple(r) for r in per_round] == [
        (r, sum(e.explained for e in store.episodes(run.id, r))) for r in (1, 2)
    ]
    rep = CliRunner().invoke(app, ["replay", run.id, "--db", str(db), "--json"])
    report = json.loads(rep.output)
    assert (report["model_calls"], report["mismatches"]) == (0, 0)
