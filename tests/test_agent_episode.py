"""Acting agents and the agent episode graph, offline: scripted backends, the real calculator, a
real SQLite file, exact replay and export."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pedagogy.agents.acting import (
    Action,
    Actor,
    DemonstrationBackend,
    LiveToolRunner,
    RecordedToolRunner,
    arithmetic_demonstration,
    first_thought,
    ftp_from,
    parse_action,
    render_action,
    trajectory,
)
from pedagogy.agents.roles import Student, Teacher, Verifier
from pedagogy.backends.base import Completion
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.cli import app
from pedagogy.config import load_config
from pedagogy.domains.arithmetic import solve_steps
from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError
from pedagogy.graphs.agent_episode import AgentEpisodeAgents, build_agent_episode_graph
from pedagogy.graphs.replay import replay_run
from pedagogy.memory import RunRecord, ToolCallRecord, export_run, open_store
from pedagogy.runner import build_domain_from
from pedagogy.tools.base import Observation, ToolCall
from pedagogy.tools.registry import build_tool


class Counting:
    """The real calculator, counting its executions."""

    def __init__(self):
        self.inner = build_tool("calculator")
        self.name, self.description = self.inner.name, self.inner.description
        self.parameters = self.inner.parameters
        self.calls = 0

    async def call(self, arguments):
        self.calls += 1
        return await self.inner.call(arguments)


class Lookup:
    """A tool with two required parameters: called with JSON arguments only."""

    name, description = "lookup", "look a key up in a table"
    parameters = {
        "type": "object",
        "properties": {"table": {"type": "string"}, "key": {"type": "string"}},
        "required": ["table", "key"],
    }

    async def call(self, arguments):
        return Observation(f"{arguments['table']}[{arguments['key']}]")


@pytest.fixture(scope="module")
def domain():
    return build_domain_from(load_config(None))  # chain_sum, compact prompts


def problems(domain, n, level=0, seed=0):
    return domain.generate(random.Random(seed), n, "chain_sum", level)


# --- the text action format ----------------------------------------------------------------------


def test_parse_compact_json_answer_and_thoughts():
    tools = {"calculator": build_tool("calculator"), "lookup": Lookup()}
    a = parse_action("T:add first\nT:then subtract\nC:calculator(12+7-3)\nO:16\nA:16", tools)
    assert (a.kind, a.tool, a.arguments) == ("call", "calculator", {"expression": "12+7-3"})
    assert a.thought == "T:add first\nT:then subtract"
    assert a.text == "T:add first\nT:then subtract\nC:calculator(12+7-3)"  # the rest is ignored
    b = parse_action('C:lookup {"table": "capitals", "key": "Zorv"}', tools)
    assert b.arguments == {"table": "capitals", "key": "Zorv"}
    c = parse_action("T:easy\nA: 42 ", tools)
    assert (c.kind, c.answer, c.thought) == ("answer", "42", "T:easy")
    d = parse_action("A:1\nC:calculator(2)", tools)  # the first action line wins
    assert d.kind == "answer" and d.answer == "1"
    e = parse_action("C:nosuch(1+1)", tools)  # unknown tools are calls; the runner refuses them
    assert (e.kind, e.tool, e.arguments) == ("call", "nosuch", {"_raw": "1+1"})


@pytest.mark.parametrize(
    "text, why",
    [
        ("the answer is 4", "no action line"),
        ("T:thinking only", "no action line"),
        ("", "no action line"),
        ("A:", "empty answer"),
        ("C:calculator(1+2", "unclosed"),
        ("C:lookup(capitals)", "takes JSON arguments"),
        ("C:lookup {not json}", "no JSON object"),
        ("C:lookup [1, 2]", "expected ( or {"),
        ('C:lookup {"a": }', "no JSON object"),
        ("C:calculator 1+2", "expected ( or {"),
        ("C: (1+2)", "no tool name"),
    ],
)
def test_invalid_actions(text, why):
    a = parse_action(text, {"calculator": build_tool("calculator"), "lookup": Lookup()})
    assert a.kind == "invalid" and why in a.error


def test_render_round_trips():
    tools = {
        "calculator": build_tool("calculator"),
        "python": build_tool("python"),
        "lookup": Lookup(),
    }
    actions = [
        Action("call", thought="T:sum", tool="calculator", arguments={"expression": "(3+4)*2"}),
        Action("call", tool="python", arguments={"code": "print(1)\nprint(2)"}),  # not one line
        Action("call", tool="lookup", arguments={"table": "t", "key": "k(1)"}),
        Action("answer", thought="T:done\nT:sure", answer="-14"),
    ]
    texts = [render_action(a, tools) for a in actions]
    assert texts[0] == "T:sum\nC:calculator((3+4)*2)"
    assert texts[1].startswith('C:python {"code": ') and texts[3] == "T:done\nT:sure\nA:-14"
    for action, text in zip(actions, texts):
        back = parse_action(text, tools)
        assert (back.kind, back.tool, back.arguments, back.answer, back.thought) == (
            action.kind,
            action.tool,
            action.arguments,
            action.answer,
            action.thought,
        )
        assert render_action(back, tools) == text


# --- demonstrations ------------------------------------------------------------------------------


@pytest.mark.parametrize("demo", ["per_step", "whole"])
async def test_chain_sum_demonstrations_are_real_and_correct(domain, demo):
    calculator = Counting()
    teacher = Actor(
        DemonstrationBackend(domain, demo=demo),
        {"calculator": calculator},
        agent="teacher",
        max_steps=8,
    )
    expected_calls = 0
    for level in (0, 2, 4):
        for p in problems(domain, 4, level, seed=level):
            steps = await teacher.run(p, kind="demonstration")
            ops = len(solve_steps(p.prompt))
            calls = [s for s in steps if s.action.kind == "call"]
            assert len(calls) == (ops if demo == "per_step" else 1)
            assert all(s.observation.ok for s in calls)
            assert all(s.turn.agent == "teacher" and s.turn.backend == "scripted" for s in steps)
            assert domain.verify(p, steps[-1].action.text).correct
            if demo == "per_step":  # each observation is the intermediate result
                results = [step.rpartition("=")[2] for step in solve_steps(p.prompt)]
                assert [s.observation.text for s in calls] == results
            expected_calls += len(calls)
    assert calculator.calls == expected_calls
    with pytest.raises(ConfigError, match="per_step or whole"):
        arithmetic_demonstration("1+2", "all")


def test_first_thought_of_a_worked_solution(domain):
    assert first_thought("S:4-1=3;3-7=-4\nA:-4") == "T:4-1=3"
    assert first_thought("A:5") is None and first_thought(None) is None
    p = problems(domain, 1)[0]
    assert ftp_from(domain)(p) == first_thought(domain.solve(p))


# --- actors --------------------------------------------------------------------------------------


def calculating_student(request):
    """Acts like a student that learnt the tool: calculator on the whole problem, then answer
    what it observed; wrong (answers 0) on first sight of a problem it was not shown."""
    tool_results = [m["content"] for m in request.messages if m["role"] == "tool"]
    user = next(m["content"] for m in request.messages if m["role"] == "user")
    if "O:" not in user and not request.problem.prompt.startswith("1"):
        steps = sum(m["role"] == "assistant" for m in request.messages)
        return "let me think" if steps == 0 else "A:0"  # an invalid action, then a wrong answer
    if not tool_results:
        return f"T:use the tool\nC:calculator({request.problem.prompt.rstrip('=')})"
    return f"A:{tool_results[-1]}\nO:made-up observation"


def agents_for(domain, student_fn, *, budget=None, tools=None, demo="per_step", **actor):
    tools = tools or {"calculator": Counting()}
    backend = ScriptedBackend(student_fn)
    teacher = Actor(DemonstrationBackend(domain, demo=demo), tools, agent="teacher", max_steps=8)
    return AgentEpisodeAgents(
        Student(backend),
        Teacher(ScriptedBackend.from_domain(domain), budget=budget),
        Verifier(domain),
        actor=Actor(backend, tools, **actor),
        demonstrator=teacher,
    ), backend


def episode_input(p, i, run="run"):
    return {"episode_id": f"e{i}", "run_id": run, "round": 1, "index": i, "seed": i, "problem": p}


async def test_requests_carry_tools_stop_and_the_conversation(domain):
    agents, backend = agents_for(domain, calculating_student)
    p = next(q for q in problems(domain, 20) if not q.prompt.startswith("1"))
    rec = (await build_agent_episode_graph(agents).ainvoke(episode_input(p, 0)))["record"]
    first, later = backend.calls[0], backend.calls[-1]
    assert first.purpose == "act" and first.problem is p and "\nO:" in first.stop
    assert first.stop_lines == ["C:", "A:"]  # a step ends after its action line
    assert first.tools[0]["function"]["name"] == "calculator"
    assert first.messages == [{"role": "user", "content": p.prompt}]
    # the re-attempt sees the demonstration (as text) before the problem, then its own steps
    roles = [m["role"] for m in later.messages]
    assert roles == ["user", "assistant", "tool"]
    assert later.messages[0]["content"].endswith(f"\nO:{p.answer}\nA:{p.answer}\n{p.prompt}")
    assert later.messages[1]["tool_calls"][0]["function"]["name"] == "calculator"
    assert later.messages[2]["tool_call_id"] == later.messages[1]["tool_calls"][0]["id"]
    assert rec.outcome == "correct_after_explanation"
    d = rec.decisions
    assert (d["attempt_steps"], d["attempt_invalid"], d["attempt_answer"]) == (2, 1, "0")
    assert (d["reattempt_tools"], d["reattempt_answer"]) == (["calculator"], p.answer)
    assert d["demonstration_correct"] and d["agent"]["max_steps"] == 6


def test_a_step_is_asked_to_end_after_its_action_line_unless_answers_run_on():
    problem = Problem("toy", "add", 0, "3+4=", "7")
    for actor, lines in [
        (Actor(ScriptedBackend()), ["C:", "A:"]),
        (Actor(ScriptedBackend(), multiline_answer=True), None),  # a C: line may be code
        (Actor(ScriptedBackend(), stop_after_action=False), None),
    ]:
        request = actor.request(problem, actor.messages(problem, []), seed=0)
        assert request.stop_lines == lines and request.stop == ["\nO:"]
        assert ("stop_lines" in request.to_record()) == (lines is not None)


async def test_invalid_actions_use_up_max_steps(domain):
    agents, _ = agents_for(domain, lambda r: "I don't know", max_steps=3)
    p = problems(domain, 1)[0]
    rec = (await build_agent_episode_graph(agents).ainvoke(episode_input(p, 0)))["record"]
    attempt = rec.trajectories()[0]
    assert [s.action for s in attempt.steps] == ["invalid"] * 3
    assert all(s.observation.startswith("error: invalid action") for s in attempt.steps)
    assert rec.decisions["attempt_invalid"] == 3 and not rec.correct_first


async def test_native_tool_calls_are_accepted(domain):
    class NativeModel:
        """An LLM through the tools API: a call, then the answer as text."""

        name, model = "litellm", "fake-llm"

        async def generate(self, requests):
            out = []
            for r in requests:
                if any(m["role"] == "tool" for m in r.messages):
                    out.append(Completion(f"A:{r.messages[-1]['content']}", self.model))
                else:
                    call = ToolCall(
                        "calculator", {"expression": r.problem.prompt.rstrip("=")}, "c9"
                    )
                    out.append(Completion("Let me compute.", self.model, tool_calls=[call]))
            return out

    calc = Counting()
    actor = Actor(NativeModel(), {"calculator": calc})
    assert actor.instructions and actor.ftp_mode == "prompt"  # an LLM API: told the format
    p = problems(domain, 1)[0]
    steps = await actor.run(p)
    assert steps[0].action.native and steps[0].action.call_id == "c9"
    assert steps[0].turn.response == "Let me compute." and steps[0].turn.detail["native"]
    assert steps[0].action.text == f"T:Let me compute.\nC:calculator({p.prompt.rstrip('=')})"
    assert domain.verify(p, steps[-1].action.text).correct and calc.calls == 1


async def test_sag_keeps_only_candidates_that_parse_and_run(domain):
    p = problems(domain, 1)[0]
    expr = p.prompt.rstrip("=")
    script = [
        "no action here",  # does not parse
        f"C:calculator({expr})",
        "C:calculator(2+)",  # the tool fails
        f"T:again\nC:calculator({expr})",
        "C:nosuch(1)",  # unknown tool
        "A:0",
        f"A:{p.answer}",
        f"A:{p.answer}",
        "A:0 but",
        f"A:{p.answer}",
    ]
    backend = ScriptedBackend(script)
    calc = Counting()
    actor = Actor(backend, {"calculator": calc}, sag_n=5)
    steps = await actor.run(p, seed=3)
    assert [r.temperature for r in backend.calls] == [0.7] * 10 and len(steps) == 2
    sag = steps[0].turn.detail["sag"]
    assert (sag["n"], sag["kept"], sag["chosen"], sag["executed"]) == (5, 2, 1, 2)
    assert steps[0].observation.text == p.answer and calc.calls == 2  # not run again
    assert steps[1].turn.detail["sag"]["votes"] == {f"A:{p.answer}": 3, "A:0": 1, "A:0 but": 1}
    assert steps[1].action.answer == p.answer
    assert steps[0].turn.completion_tokens == sum(len(s.split()) for s in script[:5])
    backend.assert_all_used()


async def test_ftp_prefix_starts_the_first_step(domain):
    p = problems(domain, 1)[0]
    backend = ScriptedBackend(lambda r: "A:" + r.problem.answer)
    actor = Actor(backend, {"calculator": Counting()}, ftp=ftp_from(domain))
    steps = await actor.run(p)
    prefix = first_thought(domain.solve(p)) + "\n"
    assert backend.calls[0].messages[-1] == {"role": "assistant", "content": prefix}
    assert (
        steps[0].action.text == f"{prefix}A:{p.answer}"
        and steps[0].turn.response == f"A:{p.answer}"
    )
    assert steps[0].turn.detail["ftp"] == prefix
    segments = trajectory("attempt", "student", p.prompt, steps).segments()
    assert segments == [(p.prompt, False), (f"\n{prefix}", False), (f"A:{p.answer}", True)]


async def test_recorded_runner_serves_and_reports_mismatches():
    stored = [ToolCallRecord("t1", "turn", 0, "calculator", "call_0", {"expression": "1+1"}, "2")]
    runner = RecordedToolRunner(stored)
    obs = await runner.run(ToolCall("calculator", {"expression": "1+2"}))
    assert (
        obs.text == "2" and runner.executions == 0 and "stored calculator" in runner.mismatches[0]
    )
    missing = await runner.run(ToolCall("calculator", {"expression": "1"}))
    assert not missing.ok and runner.misses == 1
    live = LiveToolRunner({"calculator": build_tool("calculator")})
    fallback = RecordedToolRunner([], fallback=live)
    assert (await fallback.run(ToolCall("calculator", {"expression": "6*7"}))).text == "42"
    assert fallback.executions == 1 and live.executions == 1


# --- whole episodes in a real SQLite file --------------------------------------------------------


async def run_episodes(domain, agents, store, run_id, ps):
    """Run the episodes concurrently, as the loop does, and store them in one batch."""
    graph = build_agent_episode_graph(agents)
    outs = await asyncio.gather(
        *[graph.ainvoke(episode_input(p, i, run_id)) for i, p in enumerate(ps)]
    )
    records = [o["record"] for o in outs]
    store.record_episodes(records)
    return records


@pytest.fixture
def sqlite_store(tmp_path: Path):
    db = tmp_path / "agent.db"
    with open_store(db) as store:
        store.create_run(RunRecord("run", "agent", load_config(None).model_dump(), 0))
        yield store, db


def test_agent_run_is_stored_chained_replayed_and_exported(domain, sqlite_store, tmp_path):
    store, db = sqlite_store
    ps = [q for q in problems(domain, 40) if not q.prompt.startswith("1")][:5]
    ps.append(next(q for q in problems(domain, 80, seed=1) if q.prompt.startswith("1")))
    store.add_problems(ps)
    calc = Counting()
    agents, _ = agents_for(domain, calculating_student, budget=3, tools={"calculator": calc})
    records = asyncio.run(run_episodes(domain, agents, store, "run", ps))
    outcomes = sorted(r.outcome for r in records)
    assert outcomes == ["correct_after_explanation"] * 3 + ["correct_first"] + ["wrong"] * 2

    # every step is a row: a model turn, and a tool call when it called one
    stored = {e.id: e for e in store.episodes("run", with_turns=True)}
    kinds = ("attempt", "demonstration", "reattempt")
    for rec in records:
        e = stored[rec.id]
        acting = [t for t in e.turns if t.detail.get("trajectory")]
        assert len(acting) == sum(e.decisions.get(f"{k}_steps", 0) for k in kinds)
        calls = [t for t in acting if t.detail["action"] == "call"]
        assert [c.turn_id for c in e.tool_calls] == [t.id for t in calls]
        assert all(c.ok and c.latency_s >= 0 and c.call_id for c in e.tool_calls)
        assert all(t.completion_tokens > 0 and t.error is None for t in acting)
    # 3 demonstrations, 3 re-attempts and the first-try success: one calculator call each
    assert len(store.tool_calls(run_id="run")) == calc.calls == 7
    assert store.verify_chain("run") == []

    # exact replay: no model call, no tool executed, no mismatch
    executed = calc.calls
    report = replay_run(store, "run")
    assert (report.episodes, report.model_calls, report.tool_executions, report.mismatches) == (
        6,
        0,
        0,
        0,
    )
    assert calc.calls == executed

    # export: trajectories with assistant tool_calls and tool messages, with their lineage
    out = tmp_path / "agent.jsonl"
    n = export_run(store, "run", "jsonl", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert n == len(rows) == 3 + 3 + 1  # demonstrations, correct re-attempts, the first-try one
    explained = next(r for r in records if r.explained)
    shown = explained.trajectories()[1]
    assert shown.kind == "demonstration"
    demo = next(r for r in rows if r["lineage"]["turn_ids"] == shown.turn_ids)
    user, call, tool, answer = demo["messages"][:4]
    assert call["role"] == "assistant" and call["tool_calls"][0]["type"] == "function"
    fn = call["tool_calls"][0]["function"]
    assert fn["name"] == "calculator" and isinstance(json.loads(fn["arguments"]), dict)
    assert tool == {
        "role": "tool",
        "tool_call_id": call["tool_calls"][0]["id"],
        "content": tool["content"],
    }
    problem = next(p for p in ps if p.id == explained.problem_id)
    assert user == {"role": "user", "content": problem.prompt}
    assert demo["messages"][-1] == {"role": "assistant", "content": f"A:{problem.answer}"}
    assert (answer["role"], tool["content"]) == ("assistant", problem.answer)
    lineage = demo["lineage"]
    assert lineage["run_id"] == "run" and lineage["problem_id"] == problem.id
    assert lineage["turn_id"] == lineage["turn_ids"][-1] and len(lineage["turn_ids"]) == 2
    assert lineage["episode_id"] == explained.id and lineage["job_id"] is None

    # the command line shows the trajectories step by step, and replays with 0 / 0 / 0
    shown_json = CliRunner().invoke(
        app, ["show", "run", "--episode", explained.id, "--db", str(db), "--json"]
    )
    view = json.loads(shown_json.output)
    assert [t["kind"] for t in view["trajectories"]] == ["attempt", "demonstration", "reattempt"]
    step = view["trajectories"][1]["steps"][0]
    assert step["call"]["tool"] == "calculator" and step["observation"] == problem.answer
    assert view["trajectories"][2]["correct"] and view["trajectories"][0]["steps"][0]["action"] == (
        "invalid"
    )
    shown = CliRunner().invoke(app, ["show", "run", "--episode", explained.id, "--db", str(db)])
    assert shown.exit_code == 0 and "demonstration (teacher)" in shown.output
    assert "invalid: let me think" in shown.output and "calculator" in shown.output
    replayed = CliRunner().invoke(app, ["replay", "run", "--db", str(db), "--json"])
    assert replayed.exit_code == 0 and json.loads(replayed.output)["tool_executions"] == 0

    # tampering with a stored observation breaks the chain at that tool call ...
    victim = store.tool_calls(explained.id)[0]
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tool_calls SET observation = '999' WHERE id = :i"), {"i": victim.id}
        )
    assert store.verify_chain("run") == [victim.id]
    # ... and a requested call that differs from the stored one is a replay mismatch
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tool_calls SET arguments = :a WHERE id = :i"),
            {"a": json.dumps({"expression": "0+0"}), "i": victim.id},
        )
    engine.dispose()
    report = replay_run(store, "run", explained.id)
    assert report.tool_executions == 0 and any(
        "requested calculator" in m for m in report.details[0].mismatches
    )


def test_text_explanations_ftp_and_sag_replay_exactly(domain, sqlite_store):
    store, _ = sqlite_store
    ps = [q for q in problems(domain, 40, seed=2) if not q.prompt.startswith("1")][:3]
    store.add_problems(ps)
    agents, _ = agents_for(domain, calculating_student, ftp=ftp_from(domain), sag_n=3)
    agents.explain, agents.demonstrator = "text", None
    records = asyncio.run(run_episodes(domain, agents, store, "run", ps))
    rec = records[0]
    assert [t.agent for t in rec.turns].count("teacher") == 1 and rec.explanations[
        0
    ].style == "worked"
    first = rec.trajectories()[0].steps[0]
    assert first.prefix.startswith("T:") and first.turn.detail["sag"]["n"] == 3
    report = replay_run(store, "run")  # one sample a step, the chosen one
    assert (report.model_calls, report.tool_executions, report.mismatches) == (0, 0, 0)


@pytest.mark.parametrize(("sag_on", "practice_n"), [("evaluation", 1), ("all", 3)])
def test_sag_samples_where_configured(sag_on, practice_n):
    from pedagogy.backends.scripted import ScriptedBackend
    from pedagogy.config import load_config
    from pedagogy.runner import acting_agents, build_domain_from

    config = load_config(None).with_overrides(
        {"agent": {"enabled": True, "sag_n": 3, "sag_on": sag_on}}
    )
    domain = build_domain_from(config)
    backend = ScriptedBackend.from_domain(domain)
    roles = dict(
        student=Student(backend), teacher=Teacher(backend), verifier=Verifier(domain, None)
    )
    agents = acting_agents(config, domain, backend, backend, roles)
    assert agents.actor.sag_n == practice_n  # practice attempts
    assert agents.eval_actor.sag_n == 3  # held-out evaluation
