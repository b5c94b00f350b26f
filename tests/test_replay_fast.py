"""Replay without a graph per episode: the built-in graphs' node functions driven from a table,
episodes read in bulk, worker processes; still every decision compared, tampering still caught,
agent episodes with no tool executed, custom graphs through themselves."""

from __future__ import annotations

import asyncio
import shutil
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from pedagogy.config import load_config
from pedagogy.errors import ConfigError
from pedagogy.graphs import replay as R
from pedagogy.graphs.agent_episode import build_agent_episode_graph
from pedagogy.graphs.episode import Agents, build_episode_graph
from pedagogy.graphs.parts import build_domain_from
from pedagogy.graphs.replay_bench import replay_throughput, synthetic_run
from pedagogy.graphs.replay_drive import AGENT_EPISODE, EPISODE, drive, wiring_for
from pedagogy.memory import RunRecord, open_store
from pedagogy.memory.bulk import episode_ids, episodes_for_replay

RUN = "syn"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A synthetic run of 60 episodes (3 rounds), made through the compiled episode graph."""
    path = tmp_path_factory.mktemp("replay") / "syn.db"
    with open_store(path) as store:
        synthetic_run(store, RUN, episodes=60, per_round=20, right=0.4)
    return path


@pytest.fixture
def store(stored, tmp_path):
    """A copy of the synthetic run that a test may tamper with."""
    path = tmp_path / "copy.db"
    shutil.copy(stored, path)
    with open_store(path, create=False) as s:
        yield s, path


def _edges(compiled) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in compiled.get_graph().edges}


def _table_edges(wiring) -> set[tuple[str, str]]:
    edges = {("__start__", wiring.start)}
    for name, node in wiring.nodes.items():
        edges |= {(name, end) for end in node.ends}
    return edges


def test_tables_have_exactly_the_compiled_graphs_edges():
    agents = Agents(None, None, None)
    assert _table_edges(EPISODE) == _edges(build_episode_graph(agents))
    from pedagogy.graphs.agent_episode import AgentEpisodeAgents

    acting = AgentEpisodeAgents(
        None, None, None, actor=SimpleNamespace(max_steps=3), explain="text"
    )
    assert _table_edges(AGENT_EPISODE) == _edges(build_agent_episode_graph(acting))
    assert wiring_for(build_episode_graph) is EPISODE
    assert wiring_for(build_agent_episode_graph) is AGENT_EPISODE
    assert wiring_for(lambda agents: build_episode_graph(agents)) is None


def _same(a, b) -> None:
    """Two records of one episode agree on everything but the new turns' ids."""
    keys = ("outcome", "correct_first", "correct_final", "explained", "decisions", "problem_id")
    assert [getattr(a, k) for k in keys] == [getattr(b, k) for k in keys]
    assert [(t.agent, t.seq, t.response) for t in a.turns] == [
        (t.agent, t.seq, t.response) for t in b.turns
    ]
    assert [(v.correct, v.parsed_answer) for v in a.verdicts] == [
        (v.correct, v.parsed_answer) for v in b.verdicts
    ]
    assert [(x.text, x.budget_spent) for x in a.explanations] == [
        (x.text, x.budget_spent) for x in b.explanations
    ]
    assert [(c.tool, c.arguments, c.observation) for c in a.tool_calls] == [
        (c.tool, c.arguments, c.observation) for c in b.tool_calls
    ]


def _drive_and_graph(episodes, problems, domain, decided, factory):
    """Each episode replayed by the table and by its compiled graph, with fresh agents each."""

    async def both(e):
        out = []
        for compiled in (False, True):
            agents, backends, _ = R._agents(e, domain, True, False, decided.get(e.id))
            state = R._input(e, problems[e.problem_id])
            if compiled:
                out.append((await factory(agents).ainvoke(state))["record"])
            else:
                out.append((await drive(wiring_for(factory), agents, state))["record"])
        return out

    async def all_():
        return [await both(e) for e in episodes]

    return asyncio.run(all_())


def test_the_table_replays_as_the_compiled_graph_does(store):
    s, _ = store
    domain = build_domain_from(load_config(None))
    episodes, problems = episodes_for_replay(s, episode_ids(s, RUN))
    assert len(episodes) == 60 and {e.outcome for e in episodes} >= {
        "correct_first",
        "correct_after_explanation",
        "wrong",
    }
    decided = {d.subject: bool(d.chosen) for d in s.decisions(RUN, kind="intervention")}
    for fast, compiled in _drive_and_graph(
        episodes, problems, domain, decided, build_episode_graph
    ):
        _same(fast, compiled)
    # what was read in bulk is what the store's own read gives (less what a replay derives)
    full = {e.id: e for e in s.episodes(RUN, with_turns=True)}
    for e in episodes:
        f = full[e.id]
        assert (e.decisions, e.outcome, e.seed) == (f.decisions, f.outcome, f.seed)
        assert [(t.id, t.response, t.agent) for t in e.turns] == [
            (t.id, t.response, t.agent) for t in f.turns
        ]
        assert problems[e.problem_id] == s.get_problems([e.problem_id])[e.problem_id]


def test_a_run_replays_without_compiling_a_graph(store, monkeypatch):
    s, _ = store
    compiled = []
    real = build_episode_graph

    def counting(agents):
        compiled.append(agents)
        return real(agents)

    monkeypatch.setattr("pedagogy.graphs.episode.build_episode_graph", counting)
    report = R.replay_run(s, RUN, chunk=25)
    assert (report.episodes, report.model_calls, report.mismatches) == (60, 0, 0)
    assert compiled == []  # the table ran the node functions
    assert [d.episode_id for d in report.details] == episode_ids(s, RUN)


def _tamper(path, episode) -> None:
    """Make the stored first attempt of `episode` (right at first) a wrong answer."""
    first = next(t for t in episode.turns if t.agent == "student")
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE turns SET response = 'A:-123456' WHERE id = :i"), {"i": first.id}
        )
    engine.dispose()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tampered_response_is_still_a_mismatch(store, workers):
    s, path = store
    victim = next(e for e in s.episodes(RUN, with_turns=True) if e.outcome == "correct_first")
    _tamper(path, victim)
    report = R.replay_run(s, RUN, workers=workers, chunk=16)
    assert report.episodes == 60 and report.mismatches >= 1
    bad = report.to_dict()["mismatched_episodes"]
    assert [b["episode_id"] for b in bad] == [victim.id]
    assert "first_correct: stored True, replayed False" in bad[0]["mismatches"]
    # now wrong, it asks for an explanation and a re-attempt that were never recorded
    assert report.model_calls == bad[0]["model_calls"] == 2
    one = R.replay_run(s, RUN, victim.id)
    assert one.episodes == 1 and one.details[0].mismatches == bad[0]["mismatches"]


def test_worker_processes_replay_as_one_process_does(store):
    s, _ = store
    one = R.replay_run(s, RUN, workers=1)
    two = R.replay_run(s, RUN, workers=2, chunk=7)
    assert one.seconds and two.seconds  # timed; the rest is the same
    assert {**one.to_dict(), "seconds": 0} == {**two.to_dict(), "seconds": 0}
    assert one.details == two.details


def test_a_custom_graph_still_replays_through_itself(store):
    s, path = store
    compiled = []

    def self_check(agents):
        compiled.append(agents)
        return build_episode_graph(agents)

    report = R.replay_run(s, RUN, episode_graph=self_check)
    assert (report.episodes, report.model_calls, report.mismatches) == (60, 0, 0)
    assert len(compiled) == 60  # one graph per episode: its factory binds the agents
    victim = next(e for e in s.episodes(RUN, with_turns=True) if e.outcome == "correct_first")
    _tamper(path, victim)
    report = R.replay_run(s, RUN, episode_graph=self_check)
    assert report.mismatches >= 1 and report.to_dict()["mismatched_episodes"][0]["episode_id"] == (
        victim.id
    )


def test_agent_episodes_replay_through_the_table_with_no_tool_executed(tmp_path):
    from tests.test_agent_episode import Counting, agents_for, calculating_student, run_episodes

    config = load_config(None)
    domain = build_domain_from(config)
    import random

    ps = [q for q in domain.generate(random.Random(0), 40, "chain_sum", 0)][:8]
    calc = Counting()
    with open_store(tmp_path / "agent.db") as s:
        s.create_run(RunRecord("run", "agent", config.model_dump(), 0))
        s.add_problems(ps)
        agents, _ = agents_for(domain, calculating_student, budget=4, tools={"calculator": calc})
        records = asyncio.run(run_episodes(domain, agents, s, "run", ps))
        assert {r.outcome for r in records} >= {"correct_after_explanation", "wrong"}
        executed = calc.calls
        episodes, problems = episodes_for_replay(s, episode_ids(s, "run"))
        assert all(e.turns and any(t.request.get("tools") for t in e.turns) for e in episodes)
        for fast, compiled in _drive_and_graph(
            episodes, problems, domain, {}, build_agent_episode_graph
        ):
            _same(fast, compiled)
        report = R.replay_run(s, "run")
        assert (report.episodes, report.model_calls, report.tool_executions) == (8, 0, 0)
        assert report.mismatches == 0 and calc.calls == executed


def test_bad_workers_and_chunk_are_refused_by_value(store):
    s, _ = store
    with pytest.raises(ConfigError, match="workers must be a whole number >= 1, got 0"):
        R.replay_run(s, RUN, workers=0)
    with pytest.raises(ConfigError, match="chunk must be .* got 'x'"):
        R.replay_run(s, RUN, chunk="x")
    with open_store("sqlite://") as memory:  # one connection: no worker can share it
        assert R._workers(4, memory, 10_000, 100) == 1
    assert R._workers(None, s, 10, 1000) == 1  # too few episodes to be worth a process


def test_replay_throughput_returns_its_numbers(stored):
    with open_store(stored, create=False) as s:
        out = replay_throughput(s, RUN, baseline=5, workers=(1,))
    assert out["episodes"] == 60 and out["per_episode"]["episodes"] == 5
    fast = out["replay_run[workers=1]"]
    assert (fast["model_calls"], fast["mismatches"], fast["episodes"]) == (0, 0, 60)
    assert fast["per_s"] > 0 and fast["cpu_s"] > 0 and "vs_direct" in fast
