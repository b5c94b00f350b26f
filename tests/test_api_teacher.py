"""The teacher through litellm, over real HTTP, to an OpenAI-compatible server on 127.0.0.1."""

import re

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.domains.arithmetic import worked_solution
from pedagogy.memory.store import open_store
from pedagogy.testing import OpenAICompatServer
from tests.test_litellm_breaker import closed_port

pytestmark = pytest.mark.slow


def teacher(body: dict) -> str:
    """A stand-in API teacher: solves the problem named in the prompt, step by step."""
    text = body["messages"][-1]["content"]
    m = re.search(r"Problem: (\S+)=", text)
    return worked_solution(m.group(1)) if m else "ok"


def test_litellm_teacher_end_to_end(quick_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PEDAGOGY_TEST_KEY", "sk-test-secret-123")
    with OpenAICompatServer(teacher) as server:
        cfg = quick_config(
            rounds=1,
            teacher={
                "kind": "litellm",
                "model": "openai/teacher",
                "api_base": server.base_url,
                "api_key_env": "PEDAGOGY_TEST_KEY",
            },
        )
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
        assert result.exit_code == 0, result.output
        explain_calls = [
            r for r in server.requests if "worked solution" in r["messages"][-1]["content"]
        ]
    db = tmp_path / "work" / "pedagogy.db"
    store = open_store(str(db))
    (run,) = store.list_runs()
    eps = store.episodes(run.id, with_turns=True)
    teacher_turns = [t for e in eps for t in e.turns if t.agent == "teacher"]
    assert teacher_turns and len(teacher_turns) == len(explain_calls)
    assert all(
        t.backend == "litellm" and t.prompt_tokens > 0 and t.completion_tokens > 0
        for t in teacher_turns
    )
    assert all(
        t.error is None and t.response.splitlines()[-1].startswith("A:") for t in teacher_turns
    )
    (check,) = store.turns_outside_episodes(run.id)  # the startup check is a call too
    assert (check.agent, check.request["purpose"]) == ("teacher", "check")
    totals = store.token_totals(run.id)
    assert totals["teacher"]["completion_tokens"] == sum(
        t.completion_tokens for t in [*teacher_turns, check]
    )
    # the key reached the server but never the database
    for f in tmp_path.joinpath("work").rglob("*"):
        if f.is_file():
            assert b"sk-test-secret-123" not in f.read_bytes(), f


def test_a_dead_primary_teacher_opens_its_breaker_once_and_the_run_records_it(
    quick_config, tmp_path
):
    port = closed_port()
    with OpenAICompatServer(teacher) as fallback:
        cfg = quick_config(
            rounds=1,
            teacher={
                "kind": "litellm",
                "model": "openai/teacher",
                "api_base": f"http://127.0.0.1:{port}/v1",
                "options": {
                    "fallbacks": [{"model": "openai/teacher", "api_base": fallback.base_url}],
                    "breaker_cooldown_s": 3600,
                },
            },
        )
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
        assert result.exit_code == 0, result.output
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    (run,) = store.list_runs()
    circuit = store.decisions(run.id, kind="circuit")
    primary = f"openai/teacher@http://127.0.0.1:{port}/v1"
    # Opened once (3 connection failures), never probed within the hour's cool-down.
    assert [
        (d.subject, d.chosen, d.value, d.detail["state"], d.detail["role"]) for d in circuit
    ] == [(primary, False, 3.0, "open", "teacher")]
    eps = store.episodes(run.id, with_turns=True)
    teacher_turns = [t for e in eps for t in e.turns if t.agent == "teacher"]
    assert teacher_turns and all(t.error is None for t in teacher_turns)
    assert store.verify_chain(run.id) == []


def test_llm_generator_through_litellm_records_its_calls_as_turns(quick_config, tmp_path):
    """An LLM generator's calls happen while a round is planned, outside any episode: each is
    stored as a turn (episode_id NULL) on the run's hash chain, with its tokens."""
    counter = iter(range(10**6))

    def generator_and_teacher(body: dict) -> str:
        if "Write one new" not in body["messages"][-1]["content"]:
            return teacher(body)
        n = next(counter)
        a, b = n % 9 + 1, n % 7
        return f"{a}+{b}=\nA: {a + b}"

    with OpenAICompatServer(generator_and_teacher) as server:
        api = {"kind": "litellm", "api_base": server.base_url}
        cfg = quick_config(
            rounds=1,
            episodes={"per_round": 16},
            generator={"kind": "llm", "backend": {**api, "model": "openai/gen"}},
            teacher={**api, "model": "openai/teacher"},  # the scripted one needs domain solutions
        )
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
        assert result.exit_code == 0, result.output
        calls = sum("Write one new" in r["messages"][-1]["content"] for r in server.requests)
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    (run,) = store.list_runs()
    outside = store.turns_outside_episodes(run.id)
    posed = [t for t in outside if t.request.get("purpose") != "check"]
    # each API backend's startup check is a call too: a turn outside episodes of its role
    assert sorted(t.agent for t in outside if t.request.get("purpose") == "check") == [
        "generator",
        "teacher",
    ]
    assert calls >= 16 and len(posed) == calls
    assert all(
        t.agent == "generator" and t.episode_id is None and t.backend == "litellm" for t in posed
    )
    assert all(t.prompt_tokens > 0 and t.completion_tokens > 0 for t in posed)
    assert all(
        "Write one new chain_sum problem" in t.request["messages"][-1]["content"] for t in posed
    )
    assert store.token_totals(run.id)["generator"]["calls"] == calls + 1  # + its check
    assert store.verify_chain(run.id) == []
    problems = store.get_problems([e.problem_id for e in store.episodes(run.id)])
    assert {p.source for p in problems.values()} == {"generator"}
