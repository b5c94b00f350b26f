"""Plugins: custom parts registered by a module work in every command, from the run's record.

The end-to-end test is what a user does: a plugin module with a custom domain and a custom episode
graph, `pedagogy run --plugin`, then `show`, `replay`, `export` and `audit verify` without
`--plugin` (the run recorded it), and with the module gone (one line, exit 2). The unit tests
check each piece in-process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from pedagogy import parts, plugins
from pedagogy.config import RunConfig, config_from_dict, load_config
from pedagogy.errors import ConfigError
from pedagogy.graphs.registry import graph_ref, register_graph, resolve_graph

PLUGIN = '''
"""A plugin: a doubling domain and a self-check episode graph."""
from functools import partial

from langgraph.graph import END, START, StateGraph

from pedagogy.domains import Problem, Verdict, extract_final_answer, register_domain
from pedagogy.graphs import episode as E
from pedagogy.graphs.registry import register_graph
from pedagogy.memory.records import VerdictRecord


class Doubling:
    name = "{domain}"

    def skills(self):
        return ["double"]

    def levels(self, skill):
        return [0, 1]

    def generate(self, rng, n, skill, level):
        xs = [rng.randrange(10**level, 10 ** (level + 1)) for _ in range(n)]
        return [Problem(self.name, skill, level, f"2*{{x}}=", str(2 * x)) for x in xs]

    def parse_answer(self, response):
        return extract_final_answer(response)

    def verify(self, problem, response):
        answer = self.parse_answer(response)
        return Verdict(answer == problem.answer, float(answer == problem.answer), answer)

    def solve(self, problem):
        x = problem.prompt[2:-1]
        return f"S:{{x}}+{{x}}={{problem.answer}}\\nA:{{problem.answer}}"


async def self_check(state, agents):
    """One more try with a nudge before the teacher: an extra student turn per wrong attempt."""
    if state["first"].correct:
        return {{}}
    turn = await agents.student.attempt(state["problem"], len(state["turns"]), "Check it.")
    turn.episode_id = state["episode_id"]
    verdict, _ = await agents.verifier.verify(state["problem"], turn.response, turn.seq)
    v = VerdictRecord(turn.id, verdict.correct, verdict.score, verdict.parsed_answer)
    return {{"turns": [turn], "verdicts": [v], "first": verdict, "final": verdict}}


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


register_domain("{domain}", lambda **options: Doubling(), replace=True)
register_graph("{graph}", build_graph, replace=True)
'''


def write_plugin(folder: Path, module: str, domain: str, graph: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.py"
    path.write_text(PLUGIN.format(domain=domain, graph=graph))
    return path


@pytest.fixture
def isolated(monkeypatch):
    """Registries and the plugin bookkeeping as they were before the test."""
    saved = {id(r): (r, dict(r)) for r in parts._registries().values()}
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_skipped", set())
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    yield
    for registry, content in saved.values():
        registry.clear()
        registry.update(content)


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- in-process: loading, recording, refusing -------------------------------------------------


def test_a_plugin_registers_its_parts_and_the_run_records_it(isolated, tmp_path, monkeypatch):
    module, domain, graph = _unique("plug"), _unique("dbl"), _unique("check")
    write_plugin(tmp_path, module, domain, graph)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_plugins([module])
    assert plugins._loaded[module] == "--plugin"
    config = load_config(None).with_overrides(
        {"domain": {"name": domain, "options": {}}, "episodes": {"graph": graph}}
    )
    assert parts.recorded_plugins(config) == [module]
    assert parts.require_parts(config, "config") is resolve_graph(graph)
    assert graph_ref(resolve_graph(graph)) == graph


def test_a_part_registered_outside_a_plugin_is_recorded_by_its_importable_module(
    isolated, tmp_path, monkeypatch
):
    # Registered by a script: the class's module can be imported, but its import alone does not
    # register the name; the record names it, and a later command names what is still missing.
    module, domain = _unique("parts"), _unique("dbl")
    (tmp_path / f"{module}.py").write_text(
        "class Doubling:\n    pass\n\ndef factory(**options):\n    return Doubling()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from pedagogy.domains import register_domain

    imported = __import__(module)
    register_domain(domain, imported.factory)
    config = load_config(None).with_overrides({"domain": {"name": domain, "options": {}}})
    assert parts.recorded_plugins(config) == [module]

    def in_a_script(**options):
        return None

    in_a_script.__module__ = "__main__"
    register_domain(domain, in_a_script, replace=True)
    assert parts.recorded_plugins(config) == []  # a script cannot be imported again


def test_a_recorded_name_still_unknown_is_refused_with_the_fix(isolated):
    data = load_config(None).model_dump()
    data["domain"] = {"name": "nowhere_domain", "options": {}}
    data["episodes"]["graph"] = "nowhere_graph"
    # When the config loads: one line per name, with the valid ones and how to register one.
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, "run r1")
    header, domain, graph = str(err.value).splitlines()
    assert header == "2 problems in run r1:"
    assert domain.strip().startswith(
        "run r1: domain.name: unknown domain 'nowhere_domain'; choose one of: code, jsonl, "
        "reasoning_gym, world, or register one with register_domain(...) in a plugin module"
    )
    assert graph.strip().startswith("run r1: episodes.graph: unknown episode graph 'nowhere_gr")
    assert "register_graph(...)" in graph and "'module:function'" in graph
    # A config made without loading (from Python) is refused where a command needs its parts.
    config = RunConfig.model_validate(data)
    with pytest.raises(ConfigError) as err:
        parts.require_parts(config, "run r1")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("run r1 uses domain 'nowhere_domain', episode graph 'nowhere_graph'")
    assert "--plugin MODULE" in message


def test_plugin_import_errors_say_what_is_missing(isolated, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^--plugin 'no_such_plugin_x' cannot be imported"):
        plugins.load_plugins(["no_such_plugin_x"])
    with pytest.raises(ConfigError, match=r"^run r2: plugin 'no_such_plugin_x' .*--plugin MODULE"):
        plugins.load_plugins(["no_such_plugin_x"], "run r2")
    broken, needs = _unique("broken"), _unique("needs")
    (tmp_path / f"{broken}.py").write_text("raise RuntimeError('half written')\n")
    (tmp_path / f"{needs}.py").write_text("import not_installed_dependency_y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="RuntimeError: half written; fix the module"):
        plugins.load_plugins([broken])
    with pytest.raises(ConfigError, match="needs 'not_installed_dependency_y'.*install it"):
        plugins.load_plugins([needs])
    with pytest.raises(ConfigError, match="not a module name"):
        plugins.load_plugins([".relative"])


def test_a_missing_recorded_plugin_is_skipped_when_plugin_options_stand_in(
    isolated, tmp_path, monkeypatch
):
    module, domain, graph = _unique("stand_in"), _unique("dbl"), _unique("check")
    write_plugin(tmp_path, module, domain, graph)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_plugins([module])
    with pytest.warns(UserWarning, match="'gone_plugin_z' is not installed"):
        plugins.load_recorded({"plugins": ["gone_plugin_z"]}, "r3")
    plugins.load_recorded({"plugins": ["gone_plugin_z"]}, "r3")  # warned once


def test_a_config_imports_its_plugins_before_checking_names(isolated, tmp_path, monkeypatch):
    module, domain = _unique("cfgplug"), _unique("dbl")
    (tmp_path / f"{module}.py").write_text(
        "from pedagogy.domains.registry import register_domain\n\n"
        "def factory(size: int = 1):\n    return None\n\n"
        f"register_domain({domain!r}, factory)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "config.yaml"
    data = {"plugins": [module], "domain": {"name": domain, "options": {"sise": 2}}}
    path.write_text(yaml.safe_dump(data))
    # The option check knows the plugin's factory: the plugin was imported first.
    with pytest.raises(ConfigError, match=f"domain '{domain}' has no option 'sise'"):
        load_config(path)
    data["domain"]["options"] = {"size": 2}
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).plugins == [module] and module in plugins._loaded
    path.write_text(yaml.safe_dump({"plugins": ["absent_plugin_w"]}))
    with pytest.raises(ConfigError, match=r"config.yaml: plugin 'absent_plugin_w' cannot"):
        load_config(path)


def test_entry_points_load_by_themselves(isolated, tmp_path, monkeypatch):
    module, domain = _unique("ep_plug"), _unique("dbl")
    (tmp_path / f"{module}.py").write_text(
        "from pedagogy.domains.registry import register_domain\n\n"
        f"def register():\n    register_domain({domain!r}, lambda **options: None)\n"
    )
    dist = tmp_path / "pedagogy_ep_test-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pedagogy-ep-test\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[pedagogy.plugins]\ndoubling = {module}:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from pedagogy.domains.registry import known_domains

    assert domain not in known_domains()
    plugins.load_entry_points()
    assert domain in known_domains()
    assert plugins._loaded[module] == "entry point of pedagogy-ep-test"
    config = load_config(None).with_overrides({"domain": {"name": domain, "options": {}}})
    assert parts.recorded_plugins(config) == [module]


def test_graph_refs_resolve_or_say_which_graph_is_needed(isolated):
    from pedagogy.graphs.episode import build_episode_graph

    assert resolve_graph("episode") is build_episode_graph
    assert resolve_graph("pedagogy.graphs.episode:build_episode_graph") is build_episode_graph
    assert graph_ref(build_episode_graph) == "episode"

    def in_a_script(agents):
        return None

    in_a_script.__module__ = "__main__"
    assert (
        graph_ref(in_a_script)
        == "__main__:test_graph_refs_resolve_or_say_which_graph_is_needed.<locals>.in_a_script"
    )
    in_a_script.__qualname__ = "build_graph"
    with pytest.raises(ConfigError, match="defined in a script, so it cannot be imported"):
        resolve_graph(graph_ref(in_a_script))
    with pytest.raises(ConfigError, match=r"unknown episode graph 'nope' .*--plugin MODULE"):
        resolve_graph("nope")
    with pytest.raises(ConfigError, match="cannot import module 'no_module_q'"):
        resolve_graph("no_module_q:build")
    register_graph("mine", in_a_script)
    assert resolve_graph("mine") is in_a_script and graph_ref(in_a_script) == "mine"
    with pytest.raises(ConfigError, match="already registered"):
        register_graph("mine", in_a_script)


def test_the_runner_records_a_graph_passed_from_python(isolated):
    from pedagogy.runner import _episode_graph

    def build_graph(agents):
        return None

    build_graph.__module__, build_graph.__qualname__ = "__main__", "build_graph"
    config, factory = _episode_graph(load_config(None), build_graph, "config")
    # Recorded even though no later command can import it: replay then refuses, naming it.
    assert factory is build_graph and config.episodes.graph == "__main__:build_graph"
    with pytest.raises(ConfigError, match=r"^run r4: episode graph '__main__:build_graph' was"):
        parts.require_parts(config, "run r4")


# -- end to end, from the command line ---------------------------------------------------------


def _cli(args: list[str], cwd: Path, pythonpath: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, "-m", "pedagogy.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_custom_domain_and_graph_work_in_every_command(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "doubling_plugin", "doubling", "self_check")
    work = tmp_path / "work"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "plugin-run",
                "rounds": 1,
                "workdir": str(work),
                "domain": {"name": "doubling", "options": {}},
                "episodes": {"per_round": 8, "graph": "self_check"},
                "student": {"options": {"tiny": {}}},
                "training": {"max_steps": 2, "batch_size": 4},
                "evaluation": {"heldout_per_arm": 4},
            }
        )
    )
    db = str(work / "pedagogy.db")
    run = _cli(
        ["run", "-c", str(config), "--plugin", "doubling_plugin", "-q"], tmp_path, str(folder)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with sqlite3.connect(db) as conn:
        (run_id, stored), *others = conn.execute("SELECT id, config FROM runs").fetchall()
    assert not others
    stored = json.loads(stored)
    assert stored["plugins"] == ["doubling_plugin"] and stored["episodes"]["graph"] == "self_check"

    # From the record, without --plugin (the module is importable).
    show = _cli(["show", run_id, "--db", db, "--json"], tmp_path, str(folder))
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["run"]["id"] == run_id
    replay = _cli(["replay", run_id, "--db", db, "--json"], tmp_path, str(folder))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    report = json.loads(replay.stdout)
    assert (report["episodes"], report["model_calls"], report["mismatches"]) == (8, 0, 0)
    out = tmp_path / "records.jsonl"
    export = _cli(["export", run_id, "--db", db, "--out", str(out)], tmp_path, str(folder))
    assert export.returncode == 0 and out.stat().st_size > 0, export.stderr
    audit = _cli(["audit", "verify", run_id, "--db", db], tmp_path, str(folder))
    assert audit.returncode == 0 and "clean" in audit.stdout, audit.stdout + audit.stderr

    # The self-check graph's extra student turns are what the default graph would not request:
    # the custom graph is really the one replayed.
    with sqlite3.connect(db) as conn:
        explained = conn.execute(
            "SELECT COUNT(*) FROM episodes WHERE run_id = ? AND explained", (run_id,)
        ).fetchone()[0]
        student_turns = conn.execute(
            "SELECT COUNT(*) FROM turns WHERE run_id = ? AND agent = 'student'", (run_id,)
        ).fetchone()[0]
    assert student_turns > 8 + explained  # attempts and re-attempts, plus self-checks

    # The module gone: each command says what is missing in one line, exit 2, and writes nothing.
    missing = tmp_path / "missing.jsonl"
    for args in (
        ["show", run_id, "--db", db],
        ["replay", run_id, "--db", db],
        ["export", run_id, "--db", db, "--out", str(missing)],
    ):
        proc = _cli(args, tmp_path, None)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith(
            f"error: run {run_id}: plugin 'doubling_plugin' cannot be imported"
        ), proc.stderr
        assert "PYTHONPATH" in proc.stderr and "--plugin MODULE" in proc.stderr
    assert not missing.exists()
    # The chain is checked from stored rows alone: audit warns and verifies.
    proc = _cli(["audit", "verify", run_id, "--db", db], tmp_path, None)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.startswith("warning: run ") and "doubling_plugin" in proc.stderr
