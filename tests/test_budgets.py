"""Budgets that stop a run: teacher tokens, cost and wall time, on a real SQLite file; and a whole
run stopped as `budget_exhausted`, then resumed with a higher limit, through the CLI."""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.config import BudgetConfig, RunConfig
from pedagogy.domains.base import Problem
from pedagogy.errors import BudgetExhausted
from pedagogy.graphs.budget import BudgetGuard, Spent
from pedagogy.memory import EpisodeRecord, RunRecord, TurnRecord, open_store
from pedagogy.report import OUTSIDE_EPISODES, run_summary

runner = CliRunner()


def _turn(agent: str, backend: str, tokens: tuple[int, int], cost: float | None) -> TurnRecord:
    return TurnRecord(
        seq=0,
        agent=agent,
        backend=backend,
        model="m",
        request={"messages": []},
        response="A:1",
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        cost=cost,
        id=uuid.uuid4().hex,
    )


def _episode(store, run_id: str, index: int, level: int, turns: list[TurnRecord]) -> EpisodeRecord:
    p = Problem("arith", "add", level, f"{index}+{level}=", str(index + level))
    store.add_problems([p])
    for seq, t in enumerate(turns):
        t.seq = seq
    return EpisodeRecord(
        id=uuid.uuid4().hex,
        run_id=run_id,
        round=1,
        index=index,
        problem_id=p.id,
        arm=p.arm,
        student_version="v0",
        outcome="wrong",
        turns=turns,
    )


@pytest.fixture
def store(tmp_path: Path):
    """A run with two arms: local student calls (no cost stored), priced API teacher calls, one
    API call of unknown price, and a teacher call outside any episode (a refinement)."""
    s = open_store(str(tmp_path / "pedagogy.db"))
    s.create_run(RunRecord("run1", "t", {"budget": {"teacher_tokens": 500}}, 0))
    s.record_episodes(
        [
            _episode(
                s,
                "run1",
                0,
                0,
                [
                    _turn("student", "transformers", (10, 2), None),
                    _turn("teacher", "litellm", (100, 20), 0.25),
                ],
            ),
            _episode(
                s,
                "run1",
                1,
                1,
                [
                    _turn("student", "transformers", (12, 3), None),
                    _turn("teacher", "litellm", (200, 30), None),
                ],
            ),
        ]
    )
    s.record_turns("run1", [_turn("teacher", "litellm", (40, 10), 0.5)])
    yield s
    s.close()


def test_usage_per_role_and_arm_and_what_is_spent(store):
    rows = {(u.agent, u.arm, u.backend): u for u in store.usage("run1")}
    assert set(rows) == {
        ("student", "add@0", "transformers"),
        ("student", "add@1", "transformers"),
        ("teacher", "add@0", "litellm"),
        ("teacher", "add@1", "litellm"),
        ("teacher", None, "litellm"),
    }
    assert rows[("teacher", "add@1", "litellm")].cost is None  # unknown, not 0
    assert rows[("teacher", "add@1", "litellm")].cost_unknown == 1

    spent = Spent.of(store, "run1", wall_seconds=3.0)
    # teacher tokens: every teacher call, in episodes or not; cost: the known costs; the local
    # student's calls cost nothing, the API call without a price is unknown
    assert spent == Spent(
        teacher_tokens=120 + 230 + 50, cost_usd=0.75, cost_unknown=1, wall_seconds=3.0
    )

    summary = run_summary(store, "run1")
    by_arm, by_role = summary["usage"]["by_arm"], summary["usage"]["by_role"]
    assert set(by_arm) == {"add@0", "add@1", OUTSIDE_EPISODES}
    assert by_arm["add@0"]["teacher"] == {
        "calls": 1,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "tokens": 120,
        "cost": 0.25,
        "cost_unknown": 0,
    }
    assert by_arm["add@1"]["student"]["cost_unknown"] == 0  # local: free, not unknown
    assert by_arm[OUTSIDE_EPISODES] == {"teacher": by_arm[OUTSIDE_EPISODES]["teacher"]}
    for role in ("student", "teacher"):  # the arms add up to the role's totals
        for key in ("calls", "tokens", "cost_unknown"):
            parts = sum(arm[role][key] for arm in by_arm.values() if role in arm)
            assert parts == by_role[role][key]
    assert by_role["teacher"]["cost"] == 0.75
    assert summary["budget"] == {"teacher_tokens": {"limit": 500, "spent": 400}}


def _check(store, budget: BudgetConfig, state=None, guard=None) -> BudgetGuard:
    guard = guard or BudgetGuard()
    guard.check(budget, store, "run1", state or {}, 3, lambda kind, data: None)
    return guard


@pytest.mark.parametrize(
    "budget, name, says",
    [
        (BudgetConfig(teacher_tokens=400), "teacher_tokens", "400 tokens spent of 400"),
        (BudgetConfig(cost_usd=0.5), "cost_usd", "$0.7500 spent of $0.5000 (1 call(s) of unknown"),
        (BudgetConfig(wall_seconds=60), "wall_seconds", "61 s spent of 60 s"),
    ],
)
def test_a_reached_budget_stops_naming_it_spent_and_limit(store, budget, name, says):
    with pytest.raises(BudgetExhausted) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check(store, budget, {"elapsed_s": 61.0})
    err = caught.value
    assert (err.budget, err.limit) == (name, getattr(budget, name))
    assert "before round 3" in str(err) and says in str(err)
    assert f"pedagogy run --resume run1 --budget-{name.replace('_', '-')} N" in str(err)
    assert err.exit_code == 3


def test_budgets_not_reached_or_off_let_the_run_go_on(store):
    _check(store, BudgetConfig())
    _check(store, BudgetConfig(teacher_tokens=401, wall_seconds=62), {"elapsed_s": 61.0})


def test_unknown_cost_is_not_counted_silently_it_warns_once(store):
    with pytest.warns(UserWarning, match=r"1 model call\(s\) of unknown price are not counted"):
        guard = _check(store, BudgetConfig(cost_usd=10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second check in the same run: no second warning
        _check(store, BudgetConfig(cost_usd=10), guard=guard)
        _check(store, BudgetConfig(teacher_tokens=10_000))  # no cost budget: nothing to warn


def test_the_wall_clock_adds_up_across_resumes(monkeypatch):
    from types import SimpleNamespace

    from pedagogy.graphs import budget

    now = [1000.0]  # the guard's clock, moved by hand: the sums are exact on any machine
    monkeypatch.setattr(budget, "time", SimpleNamespace(monotonic=lambda: now[0]))
    guard = BudgetGuard(mark=now[0])
    now[0] += 5.0  # this process has run 5 s since its last node finished
    assert guard.elapsed({"elapsed_s": 100.0}) == 105.0
    assert guard.lap({"elapsed_s": 100.0}) == 105.0
    assert guard.elapsed({"elapsed_s": 105.0}) == 105.0  # restarted
    now[0] += 0.25
    assert guard.elapsed({}) == 0.25


def test_budgets_are_off_by_default_and_validated():
    assert RunConfig().budget == BudgetConfig(teacher_tokens=None, cost_usd=None, wall_seconds=None)
    with pytest.raises(ValueError):
        BudgetConfig(cost_usd=0)


@pytest.mark.slow
def test_a_run_stops_as_budget_exhausted_and_resumes_with_a_higher_limit(quick_config, tmp_path):
    cfg = quick_config(
        rounds=2,
        episodes={"per_round": 24, "write_batch": 8},
        training={"max_steps": 5, "max_seconds": 600},
        evaluation={"heldout_per_arm": 8},
    )
    db = str(tmp_path / "work" / "pedagogy.db")
    first = runner.invoke(app, ["run", "-c", str(cfg), "-q", "--budget-teacher-tokens", "1"])
    assert first.exit_code == 3, first.output
    store = open_store(db)
    (run,) = store.list_runs()
    assert run.status == "budget_exhausted" and run.finished_at is not None
    spent = store.token_totals(run.id)["teacher"]
    tokens = spent["prompt_tokens"] + spent["completion_tokens"]
    assert tokens > 1
    assert run.error.startswith(f"budget exhausted before round 2: teacher_tokens: {tokens:,} ")
    assert "stopped budget exhausted before round 2" in " ".join(first.output.split())
    assert {e.round for e in store.episodes(run.id)} == {1}  # round 2 never started

    again = runner.invoke(app, ["run", "-c", str(cfg), "-q", "--resume", run.id])
    assert again.exit_code == 3, again.output  # the stored limit still holds

    more = runner.invoke(
        app, ["run", "-q", "--db", db, "--resume", run.id, "--budget-teacher-tokens", "1000000"]
    )
    assert more.exit_code == 0, more.output
    run = store.get_run(run.id)
    assert run.status == "completed" and run.error is None
    assert run.config["budget"]["teacher_tokens"] == 1_000_000  # the raised limit is kept
    eps = store.episodes(run.id)
    assert sorted((e.round, e.index) for e in eps) == [(r, i) for r in (1, 2) for i in range(24)]
    assert [j.status for j in store.training_jobs(run.id)] == ["completed", "completed"]

    shown = runner.invoke(app, ["show", run.id, "--db", db, "--json"])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    by_arm = summary["usage"]["by_arm"]
    assert set(by_arm) == {"chain_sum@0", "chain_sum@1"}
    assert (
        sum(a["teacher"]["tokens"] for a in by_arm.values() if "teacher" in a)
        == (summary["usage"]["by_role"]["teacher"]["tokens"])
    )
    assert summary["budget"]["teacher_tokens"]["limit"] == 1_000_000
    text = runner.invoke(app, ["show", run.id, "--db", db])
    assert "tokens per curriculum arm" in text.output and "budget teacher_tokens:" in text.output
