"""Registries the loop really uses: a part a plugin registers is what a run builds.

One generic `Registry` (`pedagogy.registry`) behind the domains, tools, episode graphs, trainers,
backends, samplers, intervention policies and explanation styles; the config's name fields are
checked against them when the config loads (after its plugins are imported), and the loop builds
each part from its registry.
Each end-to-end test is what a user does: a plugin module in a folder, listed under `plugins:`,
and `pedagogy run --config`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.errors import ConfigError, UnknownNameError
from pedagogy.memory import open_store
from pedagogy.registry import Registry

runner = CliRunner()


def _plugin(tmp_path: Path, monkeypatch, source: str) -> str:
    """A plugin module with `source` in `tmp_path` (importable), by a fresh name."""
    module = f"regplugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


def _run(quick_config, module: str, **overrides):
    cfg = quick_config(plugins=[module], **overrides)
    return runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])


def _db(tmp_path: Path) -> Path:
    return tmp_path / "work" / "pedagogy.db"


# -- the registry type ---------------------------------------------------------------------------


def test_a_registry_registers_refuses_clashes_and_names_the_valid_ones():
    reg: Registry = Registry("widget", {"a": dict}, register_with="register_widget")
    reg.register("b", list)
    assert reg.names() == ["a", "b"] and reg.get("b") is list and "b" in reg
    with pytest.raises(ConfigError, match=r"widget 'b' is already registered.*replace=True"):
        reg.register("b", dict)
    reg.register("b", dict, replace=True)
    assert reg.get("b") is dict
    with pytest.raises(ConfigError, match="must be callable"):
        reg.register("c", None)
    with pytest.raises(ConfigError, match="non-empty string"):
        reg.register("", dict)
    with pytest.raises(UnknownNameError) as err:
        reg.get("z")
    assert str(err.value).startswith("unknown widget 'z'; choose one of: a, b, or register one ")
    assert "register_widget(...)" in str(err.value) and "--plugin MODULE" in str(err.value)
    assert reg.get("z", None) is None  # with a default: dict.get
    copy = reg.copy()
    copy.register("d", dict)
    assert "d" not in reg and isinstance(copy, Registry) and copy.kind == "widget"


def test_the_part_registries_are_registries(restore_registries):
    from pedagogy.backends.registry import BACKENDS, check_backend_kind, register_backend
    from pedagogy.training import trainers

    assert isinstance(trainers._REGISTRY, Registry) and isinstance(BACKENDS, Registry)
    assert trainers.known_trainers() == ["dpo", "onpolicy", "redi", "sft", "trajectory_sft"]
    with pytest.raises(UnknownNameError, match=r"unknown backend 'gpt5000'.*register_backend"):
        check_backend_kind("gpt5000")
    register_backend("mine", BACKENDS["scripted"])
    with pytest.raises(ConfigError, match="already registered"):
        register_backend("mine", BACKENDS["scripted"])
    check_backend_kind("mine")


def test_domains_tools_and_graphs_are_registries_under_their_old_names_too(restore_registries):
    from pedagogy.domains import registry as domains
    from pedagogy.graphs import registry as graphs
    from pedagogy.tools import registry as tools

    for module, registry, kind in [
        (domains, domains.DOMAINS, "domain"),
        (tools, tools.TOOLS, "tool"),
        (graphs, graphs.GRAPHS, "episode graph"),
    ]:
        assert isinstance(registry, Registry) and module._REGISTRY is registry
        assert registry.kind == kind
    assert domains.known_domains() == ["code", "jsonl", "reasoning_gym", "world"]
    assert tools.known_tools() == ["calculator", "python", "retrieve"]
    assert graphs.known_graphs() == ["agent_episode", "episode"]
    with pytest.raises(UnknownNameError, match=r"unknown tool 'calc'.*register_tool\(\.\.\.\)"):
        tools.build_tool("calc")
    with pytest.raises(UnknownNameError, match=r"unknown domain 'rg'.*register_domain\(\.\.\.\)"):
        domains.build_domain("rg")
    with pytest.raises(ConfigError, match="without ':'"):
        graphs.register_graph("a:b", lambda agents: None)
    tools.register_tool("corpus_tool", tools.TOOLS["retrieve"], needs=["path"])
    assert tools.tool_needs("corpus_tool") == ("path",) and tools.tool_needs("calculator") == ()
    assert tools.tool_needs("retrieve") == ("path", "documents")
    with pytest.raises(ConfigError, match="must be option names"):
        tools.register_tool("bad_needs", tools.TOOLS["retrieve"], needs=[""])
    assert "bad_needs" not in tools.TOOLS


# -- domains, tools and graphs at load -------------------------------------------------------


def _acting(**agent) -> dict:
    return {"agent": {"enabled": True, **agent}}


@pytest.mark.parametrize(
    "overrides, line",
    [
        (
            _acting(tools=["calculater"]),
            "agent.tools: unknown tool 'calculater'; choose one of: calculator, python, retrieve, "
            "or register one with register_tool(...) in a plugin module",
        ),
        (
            {"agent": {"tool_options": {"retreive": {"k": 2}}}},
            "agent.tool_options: unknown tool 'retreive'; choose one of: calculator, python, "
            "retrieve, or register one with register_tool(...)",
        ),
        (
            {"domain": {"name": "reasoning-gym", "options": {}}},
            "domain.name: unknown domain 'reasoning-gym'; choose one of: code, jsonl, "
            "reasoning_gym, world, or register one with register_domain(...)",
        ),
        (
            {"episodes": {"graph": "episodes"}},
            "episodes.graph: unknown episode graph 'episodes'; choose one of: agent_episode, "
            "episode, or register one with register_graph(...)",
        ),
        (
            _acting(tools=["retrieve"]),
            "agent.tools: tool 'retrieve' needs path or documents, which domain 'reasoning_gym' "
            "does not supply; it can serve: calculator, python; choose among those, or give "
            "agent.tool_options.retrieve.path",
        ),
    ],
)
def test_a_bad_domain_tool_or_graph_fails_at_load_in_one_line(
    quick_config, tmp_path, overrides, line
):
    cfg = quick_config(**overrides)
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2, result.output
    (said,) = result.output.strip().splitlines()
    assert said.startswith(f"error: {cfg}: {line}"), said
    assert not (tmp_path / "work").exists()  # no database, no run folder


def test_a_tool_is_served_when_the_domain_or_the_config_supplies_what_it_needs(tmp_path):
    from pedagogy.config import load_config

    base = load_config(None)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "text": "Zorv is the capital of Qel."}\n')
    given = {"retrieve": {"path": str(corpus)}}
    assert base.with_overrides(_acting(tools=["retrieve"], tool_options=given)).agent.tools
    world = {"domain": {"name": "world", "options": {"n_entities": 40}}}
    assert base.with_overrides({**world, **_acting(tools=["retrieve", "calculator"])})
    # Not acting: the tools are not built, so only their names are checked.
    assert base.with_overrides({"agent": {"tools": ["retrieve"]}}).agent.tools == ["retrieve"]


# -- trainers ------------------------------------------------------------------------------------

TRAINER_PLUGIN = '''
"""A plugin: a trainer that wraps sft and leaves a marker that it trained."""
from pathlib import Path

from pedagogy.training.sft import SFT
from pedagogy.training.trainers import register_trainer

MARKER = Path({marker!r})


class RecordingSFT(SFT):
    kind = "recording_sft"

    def train(self, base_path, items, output_dir, config=None, *, progress=None):
        assert all(isinstance(i, tuple) and len(i) == 2 for i in items)  # (prompt, completion)
        result = super().train(base_path, items, output_dir, config, progress=progress)
        with MARKER.open("a") as f:
            f.write(f"{{len(items)}} {{result.steps}} {{config.max_steps}}\\n")
        return result


register_trainer("recording_sft", RecordingSFT, replace=True)
'''


def test_a_plugin_trainer_trains_the_run(quick_config, tmp_path, monkeypatch, restore_registries):
    marker = tmp_path / "trained.txt"
    module = _plugin(tmp_path, monkeypatch, TRAINER_PLUGIN.format(marker=str(marker)))
    result = _run(quick_config, module, rounds=1, training={"kind": "recording_sft"})
    assert result.exit_code == 0, result.output
    store = open_store(str(_db(tmp_path)))
    (run,) = store.list_runs()
    (job,) = store.training_jobs(run.id)
    assert job.kind == "recording_sft" and job.status == "completed"
    examples, steps, max_steps = marker.read_text().split()
    assert int(examples) > 0 and int(steps) == int(max_steps) == 40  # the config's steps
    assert job.metrics["steps"] == 40 and run.config["plugins"] == [module]


def test_a_typo_in_training_kind_fails_at_load_naming_the_trainers(quick_config, tmp_path):
    cfg = quick_config(training={"kind": "stf"})
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2, result.output
    assert (
        "training.kind: unknown trainer 'stf'; choose one of: dpo, onpolicy, redi, sft"
        in result.output
    )
    assert "register_trainer" in result.output
    assert not (tmp_path / "work").exists()  # nothing written


# -- samplers, intervention policies, explanation styles ----------------------------------------

SAMPLER_PLUGIN = '''
"""A plugin: a sampler that only ever draws the first arm, and says which explore it got."""
from dataclasses import dataclass
from pathlib import Path

from pedagogy.agents.curriculum import UniformSampler, register_sampler

MARKER = Path({marker!r})


@dataclass
class FirstArm(UniformSampler):
    OPTIONS = ("explore",)  # the curriculum settings it takes

    explore: float = 0.0

    def sample(self, n):
        MARKER.write_text(f"{{self.explore}} {{self.arms[0]}}")
        return [self.arms[0]] * n


register_sampler("first_arm", FirstArm, replace=True)
'''


def test_a_plugin_sampler_chooses_the_runs_arms(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    marker = tmp_path / "sampled.txt"
    module = _plugin(tmp_path, monkeypatch, SAMPLER_PLUGIN.format(marker=str(marker)))
    result = _run(
        quick_config, module, rounds=1, curriculum={"sampler": "first_arm", "explore": 0.3}
    )
    assert result.exit_code == 0, result.output
    explore, arm = marker.read_text().split()
    assert float(explore) == 0.3  # from curriculum.explore, as its OPTIONS asked
    store = open_store(str(_db(tmp_path)))
    (run,) = store.list_runs()
    episodes = store.episodes(run.id)
    assert episodes and {e.arm for e in episodes} == {arm}


POLICY_PLUGIN = '''
"""A plugin: an intervention policy that never explains, and says which seed the run gave it."""
from dataclasses import dataclass
from pathlib import Path

from pedagogy.agents.intervention import NeverPolicy, register_policy

MARKER = Path({marker!r})


@dataclass
class Silent(NeverPolicy):
    seed: int = 0

    def decide(self, candidates, budget):
        MARKER.write_text(str(self.seed))
        return super().decide(candidates, budget)


register_policy("silent", Silent, replace=True)
'''


def test_a_plugin_intervention_policy_decides_the_runs_explanations(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    import sqlite3

    marker = tmp_path / "decided.txt"
    module = _plugin(tmp_path, monkeypatch, POLICY_PLUGIN.format(marker=str(marker)))
    result = _run(quick_config, module, rounds=1, seed=7, episodes={"intervention": "silent"})
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "7"  # the run supplied its seed
    with sqlite3.connect(_db(tmp_path)) as db:
        assert db.execute("SELECT count(*) FROM explanations").fetchone() == (0,)
        wrong = db.execute("SELECT count(*) FROM episodes WHERE NOT correct_first").fetchone()[0]
    assert wrong > 0  # there were wrong attempts to explain, and the policy explained none


STYLE_PLUGIN = '''
"""A plugin: an explanation style that shows the answer line, under its own name."""
from dataclasses import dataclass
from typing import ClassVar

from pedagogy.agents.explanations import ConciseStyle, register_style


@dataclass(frozen=True)
class AnswerOnly(ConciseStyle):
    name: ClassVar[str] = "answer_only"


register_style("answer_only", AnswerOnly, replace=True)
'''


def test_a_plugin_style_tells_the_runs_explanations(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    import sqlite3

    module = _plugin(tmp_path, monkeypatch, STYLE_PLUGIN)
    result = _run(quick_config, module, rounds=1, episodes={"style": "answer_only"})
    assert result.exit_code == 0, result.output
    with sqlite3.connect(_db(tmp_path)) as db:
        styles = db.execute("SELECT style, count(*) FROM explanations GROUP BY style").fetchall()
    assert [s for s, _ in styles] == ["answer_only"] and styles[0][1] > 0


@pytest.mark.parametrize(
    "section, field, message",
    [
        ({"curriculum": {"sampler": "bandt"}}, "curriculum.sampler", "register_sampler"),
        ({"episodes": {"intervention": "utilty"}}, "episodes.intervention", "register_policy"),
        ({"episodes": {"style": "consice"}}, "episodes.style", "register_style"),
    ],
)
def test_a_typo_in_a_named_field_fails_at_load(quick_config, tmp_path, section, field, message):
    cfg = quick_config(**section)
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"{field}: unknown " in result.output and message in result.output
    if field == "episodes.style":
        assert "adaptive, concise, detailed, probe, worked" in result.output
    assert not (tmp_path / "work").exists()


# -- domains, tools and graphs from a plugin ----------------------------------------------------

DOUBLING = '''
class Doubling:
    """Double a number of level + 1 digits."""

    name = "doubling"

    def skills(self):
        return ["double"]

    def levels(self, skill):
        return [0, 1]

    def generate(self, rng, n, skill, level):
        xs = [rng.randrange(10**level, 10 ** (level + 1)) for _ in range(n)]
        return [Problem(self.name, skill, level, f"2*{x}=", str(2 * x)) for x in xs]

    def parse_answer(self, response):
        return extract_final_answer(response)

    def verify(self, problem, response):
        answer = self.parse_answer(response)
        return Verdict(answer == problem.answer, float(answer == problem.answer), answer)

    def solve(self, problem):
        x = problem.prompt[2:-1]
        return f"S:{x}+{x}={problem.answer}\\nA:{problem.answer}"
'''

DOMAIN_PLUGIN = (
    '''"""A plugin: a doubling domain."""
from pedagogy.domains import Problem, Verdict, extract_final_answer, register_domain
'''
    + DOUBLING
    + """

register_domain("doubling", lambda **options: Doubling(), replace=True)
"""
)

TOOL_PLUGIN = (
    '''"""A plugin: an abacus tool, and a domain whose demonstrations add on it."""
from pedagogy.domains import Problem, Verdict, extract_final_answer, register_domain
from pedagogy.tools import function_tool, register_tool
'''
    + DOUBLING
    + '''

class AbacusDoubling(Doubling):
    def tools(self):
        return ["abacus"]

    def demonstrate(self, problem):
        x = int(problem.prompt[2:-1])
        return [{"tool": "abacus", "arguments": {"a": x, "b": x}}, {"answer": problem.answer}]


def make_abacus(beads: str = "o"):
    def abacus(a: int, b: int) -> str:
        """Add two numbers on the abacus.

        Args:
            a: The first number.
            b: The second number.
        """
        return f"{beads} {a + b}"

    return function_tool(abacus)


register_tool("abacus", make_abacus, replace=True)
register_domain("abacus_doubling", lambda **options: AbacusDoubling(), replace=True)
'''
)

GRAPH_PLUGIN = '''
"""A plugin: the ready-made episode graph with a self-check after every first attempt."""
from functools import partial

from langgraph.graph import END, START, StateGraph

from pedagogy.graphs import episode as E
from pedagogy.graphs.registry import register_graph
from pedagogy.memory.records import VerdictRecord


async def self_check(state, agents):
    turn = await agents.student.attempt(state["problem"], len(state["turns"]), "Check it.")
    turn.episode_id = state["episode_id"]
    verdict, _ = await agents.verifier.verify(state["problem"], turn.response, turn.seq)
    v = VerdictRecord(turn.id, verdict.correct, verdict.score, verdict.parsed_answer)
    return {"turns": [turn], "verdicts": [v], "first": verdict, "final": verdict}


def build_graph(agents):
    g = StateGraph(E.EpisodeState)
    for node in (E.attempt, self_check, E.decide, E.explain, E.reattempt):
        g.add_node(node.__name__, partial(node, agents=agents))
    g.add_node("record", E.record)
    g.add_edge(START, "attempt")
    g.add_edge("attempt", "self_check")
    g.add_edge("self_check", "decide")
    g.add_conditional_edges("decide", lambda s: "explain" if s["intervene"] else "record")
    g.add_edge("explain", "reattempt")
    g.add_edge("reattempt", "record")
    g.add_edge("record", END)
    return g.compile()


register_graph("self_check", build_graph, replace=True)
'''

TINY_RUN = {
    "rounds": 1,
    "episodes": {"per_round": 12},
    "training": {"max_steps": 4},
    "evaluation": {"heldout_per_arm": 4},
}
"""One round of a few episodes and a few training steps: the part is used, nothing more."""


def _rows(tmp_path: Path, sql: str) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(_db(tmp_path)) as db:
        return db.execute(sql).fetchall()


def test_a_plugin_domain_poses_the_runs_problems(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    module = _plugin(tmp_path, monkeypatch, DOMAIN_PLUGIN)
    result = _run(quick_config, module, domain={"name": "doubling", "options": {}}, **TINY_RUN)
    assert result.exit_code == 0, result.output
    problems = _rows(tmp_path, "SELECT domain, prompt, answer FROM problems")
    assert problems and {d for d, _, _ in problems} == {"doubling"}
    assert all(p == f"2*{int(a) // 2}=" for _, p, a in problems)
    assert _rows(tmp_path, "SELECT count(*) FROM episodes")[0][0] == 12


def test_a_plugin_tool_is_called_in_the_runs_episodes(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    module = _plugin(tmp_path, monkeypatch, TOOL_PLUGIN)
    result = _run(
        quick_config,
        module,
        domain={"name": "abacus_doubling", "options": {}},
        agent={
            "enabled": True,
            "tools": ["abacus"],
            "tool_options": {"abacus": {"beads": "ooo"}},
            "max_steps": 2,
            "step_tokens": 16,
        },
        **TINY_RUN,
    )
    assert result.exit_code == 0, result.output
    calls = _rows(tmp_path, "SELECT tool, arguments, observation, ok FROM tool_calls")
    abacus = [(json.loads(a), o) for t, a, o, ok in calls if t == "abacus" and ok]
    assert abacus, calls  # the teacher's demonstrations added on the plugin's abacus
    for arguments, observation in abacus:
        assert observation == f"ooo {arguments['a'] + arguments['b']}"  # with the config's option


def test_a_plugin_graph_runs_the_runs_episodes(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    module = _plugin(tmp_path, monkeypatch, GRAPH_PLUGIN)
    result = _run(
        quick_config,
        module,
        episodes={"per_round": 12, "graph": "self_check"},
        **{k: v for k, v in TINY_RUN.items() if k != "episodes"},
    )
    assert result.exit_code == 0, result.output
    (stored,) = _rows(tmp_path, "SELECT config FROM runs")
    assert json.loads(stored[0])["episodes"]["graph"] == "self_check"
    checks = _rows(
        tmp_path,
        "SELECT count(*) FROM turns WHERE agent = 'student' AND episode_id IS NOT NULL "
        "AND request LIKE '%Check it.%'",
    )[0][0]
    assert checks == 12  # one self-check per episode: the plugin's graph ran them
