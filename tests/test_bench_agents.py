"""The agents benchmark: arm configs, world lengths vs the student's positions, trajectory
statistics, paired verdicts on fake run records, the CLI with fake runs, and a quick bench."""

import asyncio
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from pedagogy.benchmarks import agents as A
from pedagogy.benchmarks import core
from pedagogy.benchmarks import trajectories as T
from pedagogy.cli import app

runner = CliRunner()


def _dump(cfg) -> dict:
    d = cfg.model_dump()
    d.pop("name")
    d.pop("agent")
    return d


def test_arms_differ_only_in_the_agent_section(tmp_path):
    settings = A.AgentBenchSettings()
    assert settings.sizes("chain_sum") == (200, 50, 150)
    assert settings.sizes("world") == (96, 24, 100)
    for domain in A.DOMAINS:
        episodes, budget, steps = settings.sizes(domain)
        cot = A.arm_config(A.run_key(domain, "cot"), 1, settings, tmp_path)
        assert not cot.agent.enabled
        for arm in A.ARMS:
            cfg = A.arm_config(A.run_key(domain, arm), 1, settings, tmp_path)
            # Same student, seed, budget, training steps, held-out set and curriculum.
            assert _dump(cfg) == _dump(cot), (domain, arm)
            assert cfg.seed == 1 and cfg.episodes.explain_budget == budget
            assert cfg.episodes.per_round == episodes and cfg.training.max_steps == steps
            assert cfg.curriculum.sampler == "uniform"
        agent = A.arm_config(A.run_key(domain, "agent"), 1, settings, tmp_path).agent
        assert agent.enabled and agent.demo == "per_step" and agent.sag_n == 1
        sag = A.arm_config(A.run_key(domain, "agent+ftp_sag"), 1, settings, tmp_path).agent
        assert sag.enabled and sag.sag_n == 3 and sag.ftp
        assert {k: v for k, v in sag.model_dump().items() if k not in ("sag_n", "ftp")} == {
            k: v for k, v in agent.model_dump().items() if k not in ("sag_n", "ftp")
        }
    assert A.DEFAULT_ARMS == ["cot", "agent", "agent+ftp_sag"]
    assert A.ARMS["agent_whole"]["agent.demo"] == "whole"


def test_world_runs_use_the_world_and_a_student_with_room_for_its_trajectories(tmp_path):
    settings = A.AgentBenchSettings()
    cfg = A.arm_config("world/agent", 0, settings, tmp_path)
    assert cfg.domain.name == "world"
    assert cfg.domain.options == {"seed": 0, "n_entities": 60, "demo_thoughts": False}
    assert cfg.curriculum.arms == ["facts@0", "facts@1"] and cfg.agent.max_steps == 3
    assert cfg.agent.tool_options == {"retrieve": {"k": settings.world_k}}
    assert cfg.student.options["tiny"]["max_position"] == settings.world_positions
    assert cfg.student.options["max_batch_size"] == 512  # the default's other options stay
    chain = A.arm_config("chain_sum/agent", 0, settings, tmp_path)
    assert chain.domain.name == "reasoning_gym" and chain.student.options["tiny"] == {}
    quick = A.arm_config("chain_sum/cot", 0, A.AgentBenchSettings.quick_settings(), tmp_path)
    assert quick.domain.options["levels"] == {"chain_sum": core.QUICK_LEVELS}


def test_world_trajectories_fit_the_positions_steps_and_answers_they_are_given():
    """Real demonstrations (real retrieve calls) of the hardest questions practised: a re-attempt
    shows the demonstration, then the problem, then the student's own steps (twice as long)."""
    from pedagogy.agents.acting import Actor, DemonstrationBackend, trajectory
    from pedagogy.domains.registry import build_domain
    from pedagogy.tools.registry import build_tool

    settings = A.AgentBenchSettings()
    cfg = A.arm_config("world/agent", 0, settings, Path("x"))
    domain = build_domain(cfg.domain.name, **cfg.domain.options)
    tools = {"retrieve": build_tool("retrieve", **domain.tool_options()["retrieve"])}
    teacher = Actor(DemonstrationBackend(domain), tools, agent="teacher")
    hardest = max(settings.world_levels)
    assert cfg.curriculum.arms == [f"facts@{level}" for level in settings.world_levels]
    problems = domain.generate(random.Random(0), 30, "facts", hardest)

    async def lengths():
        out = []
        for p in problems:
            steps = await teacher.run(p, kind="demonstration")
            assert domain.verify(p, steps[-1].action.text).correct
            text = trajectory("demonstration", "teacher", p.prompt, steps).text()
            out.append((len(text), max(len(s.action.text) for s in steps)))
            assert len(steps) <= cfg.agent.max_steps
        return out

    measured = asyncio.run(lengths())
    longest = max(n for n, _ in measured)
    assert 2 * longest + 2 < cfg.student.options["tiny"]["max_position"], longest
    assert max(step for _, step in measured) <= cfg.agent.step_tokens
    assert max(len(domain.solve(p)) for p in problems) + 1 <= cfg.student.max_tokens


def test_unknown_arm_or_domain_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "b"
    for flag, value, known in [
        ("--arms", "agent,nope", "agent+ftp_sag"),
        ("--domains", "world,code", "chain_sum"),
    ]:
        result = runner.invoke(app, ["bench", "agents", flag, value, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert "'nope'" in result.output or "'code'" in result.output
        assert known in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


# -- trajectories ------------------------------------------------------------------------------


def _episode(rnd, decisions, calls=()):
    turns = [SimpleNamespace(id=f"t{i}", agent=agent) for i, (agent, _, _) in enumerate(calls)]
    tool_calls = [
        SimpleNamespace(turn_id=f"t{i}", ok=ok, error=error)
        for i, (_, ok, error) in enumerate(calls)
    ]
    return SimpleNamespace(round=rnd, decisions=decisions, turns=turns, tool_calls=tool_calls)


def _attempt(steps, tools, invalid, answer):
    return {
        "attempt_steps": steps,
        "attempt_tools": ["calculator"] * tools,
        "attempt_invalid": invalid,
        "attempt_answer": answer,
    }


def test_trajectory_stats_count_calls_invalid_steps_and_demonstrations():
    demo = {
        "demonstration_steps": 3,
        "demonstration_tools": ["calculator", "calculator"],
        "demonstration_invalid": 0,
        "demonstration_answer": "7",
        "demonstration_correct": True,
    }
    episodes = [
        _episode(
            0,
            {**_attempt(6, 0, 6, None), **demo},
            [("teacher", True, None), ("teacher", True, None)],
        ),
        _episode(0, _attempt(2, 1, 1, "3"), [("student", False, "bad_arguments")]),
        _episode(1, _attempt(3, 2, 0, "5"), [("student", True, None), ("student", True, None)]),
        _episode(1, _attempt(3, 2, 0, "9"), [("student", True, None), ("student", True, None)]),
    ]
    t = T.trajectory_stats(episodes)
    a = t["attempt"]
    assert a["n"] == 4 and a["tool_calls_per_problem"] == pytest.approx(5 / 4)
    assert a["invalid_rate"] == pytest.approx(7 / 14) and a["unanswered"] == pytest.approx(1 / 4)
    assert a["steps_per_problem"] == pytest.approx(14 / 4)
    assert t["demonstration"] == {
        "n": 1,
        "tool_calls_per_problem": 2.0,
        "steps_per_problem": 3.0,
        "invalid_rate": 0.0,
        "unanswered": 0.0,
        "correct": 1.0,
    }
    assert "reattempt" not in t
    assert [r["round"] for r in t["by_round"]] == [0, 1]
    assert t["by_round"][0]["invalid_rate"] == pytest.approx(7 / 8)
    assert t["by_round"][1]["tool_calls_per_problem"] == 2.0
    # Only the student's calls count; the teacher's demonstrations always run.
    assert t["student_tool_calls"] == 5 and t["student_tool_errors"] == {"bad_arguments": 1}
    assert T.trajectory_stats([_episode(0, {"intervene": True})]) == {}  # a cot run


def test_agent_stats_take_the_metrics_of_the_model_in_service():
    def ev(rnd, version, level, calls):
        return SimpleNamespace(
            round=rnd,
            model_version_id=version,
            skill="facts",
            level=level,
            metrics={"mean_tool_calls": calls, "invalid_action_rate": 0.1},
        )

    store = SimpleNamespace(
        model_versions=lambda run_id: [
            SimpleNamespace(id="v0", status="base"),
            SimpleNamespace(id="v1", status="promoted"),
            SimpleNamespace(id="v2", status="rejected"),
        ],
        evaluations=lambda run_id: [
            ev(0, "v0", 0, 0.0),
            ev(1, "v1", 0, 1.0),
            ev(1, "v1", 1, 2.0),
            ev(2, "v2", 0, 9.0),  # rolled back: not in service
        ],
        episodes=lambda run_id, with_turns=False: [_episode(0, _attempt(2, 1, 0, "x"))],
    )
    stats = T.agent_stats(store, "run")
    assert stats["heldout_agent"] == {
        "facts@0": {"mean_tool_calls": 1.0, "invalid_action_rate": 0.1},
        "facts@1": {"mean_tool_calls": 2.0, "invalid_action_rate": 0.1},
    }
    assert stats["trajectories"]["attempt"]["n"] == 1


# -- aggregation and verdicts on fake runs -----------------------------------------------------

CHAIN = [f"chain_sum@{i}" for i in range(5)]


def _record(domain, arm, seed, accs, calls=None, status="completed"):
    levels = CHAIN if domain == "chain_sum" else [f"facts@{i}" for i in range(3)]
    r = {
        "arm": A.run_key(domain, arm),
        "domain": domain,
        "method": arm,
        "seed": seed,
        "status": status,
        "seconds": 10.0,
        "heldout_final": dict(zip(levels, accs)),
        "teacher_tokens": 100,
        "explained": 5,
    }
    if calls is not None:
        r["heldout_agent"] = {
            lv: {"mean_tool_calls": calls, "invalid_action_rate": 0.05, "unanswered": 0.1}
            for lv in levels
        }
        r["trajectories"] = {
            "attempt": {
                "n": 100,
                "tool_calls_per_problem": calls,
                "steps_per_problem": calls + 1,
                "invalid_rate": 0.2,
                "unanswered": 0.3,
            },
            "by_round": [
                {"round": 0, "tool_calls_per_problem": 0.5, "invalid_rate": 0.5},
                {"round": 2, "tool_calls_per_problem": calls, "invalid_rate": 0.1},
            ],
            "student_tool_calls": 200,
            "student_tool_errors": {"bad_arguments": 4},
        }
    return r


def _runs():
    runs = []
    for seed, bump in enumerate([0.0, 0.02, 0.04]):
        runs.append(_record("chain_sum", "cot", seed, [0.5, 0.4, 0.3, 0.1, 0.0]))
        runs.append(
            _record("chain_sum", "agent", seed, [0.9, 0.9, 0.8, 0.5 + bump, 0.4 + bump], 2.0)
        )
        runs.append(
            _record("chain_sum", "agent+ftp_sag", seed, [0.9, 0.9, 0.8, 0.3, 0.0 + bump], 2.5)
        )
        runs.append(_record("world", "cot", seed, [0.3, 0.1, 0.0]))
        runs.append(_record("world", "agent", seed, [0.8, 0.2 + 2 * bump, 0.1], 1.5))
    return runs


def test_summary_pairs_each_arm_with_cot_on_the_hard_levels():
    runs = _runs()
    keys = list(dict.fromkeys(r["arm"] for r in runs))
    s = A.summarise(runs, keys)
    agent = s["chain_sum/agent"]
    assert agent["hard_levels"] == ["chain_sum@3", "chain_sum@4"]
    assert agent["hard"]["mean"] == pytest.approx(0.47)
    # per-seed gains on L3+L4: .40 .42 .44 -> mean .42, sd .02, t(2) 4.303
    hard = agent["paired_hard"]
    assert hard["n"] == 3 and hard["mean"] == pytest.approx(0.42)
    assert hard["low"] == pytest.approx(0.42 - 4.303 * 0.02 / 3**0.5, abs=1e-4)
    assert hard["excludes_zero"] is True
    assert "paired" not in s["chain_sum/cot"]
    assert s["world/agent"]["hard_levels"] == ["facts@1"]
    assert s["world/agent"]["paired_hard"]["mean"] == pytest.approx(0.14)
    assert s["chain_sum/agent"]["heldout_agent"]["mean_tool_calls"] == pytest.approx(2.0)
    assert s["chain_sum/cot"]["heldout_agent"] == {} and s["chain_sum/cot"]["trajectories"] == {}

    lines = A.target_lines(s)
    assert lines[0] == (
        "chain_sum: agent vs cot on the two hardest levels (L3, L4): +42.0 points, 95% CI "
        "[+37.0, +47.0] over 3 paired seeds (target +30): met; the interval excludes zero"
    )
    assert lines[1].startswith("chain_sum: agent+ftp_sag vs cot on the two hardest levels")
    assert lines[1].endswith("(target +30): not met; the interval excludes zero")
    assert lines[2].startswith("world: agent vs cot on 2-hop questions: +14.0 points")
    assert lines[2].endswith("(target +20): not met; the interval excludes zero")
    assert lines[3] == A.FTP_NOTE

    sag = A.sag_lines(runs, s)
    # per seed: -.30 -.31 -.32 (sd .01, half-width 4.303 * .01 / sqrt 3 = .025)
    assert sag == ["chain_sum: agent+ftp_sag vs agent on the two hardest levels: "
                   "-31.0 [-33.5, -28.5] points (excludes zero)"]  # fmt: skip

    header, rows = A.table_rows(A.by_domain(s)["chain_sum"])
    assert header[:8] == ["arm", "seeds", "L0", "L1", "L2", "L3", "L4", "mean"]
    assert header[8:11] == ["hard: L3+L4", "Δhard vs cot [95% CI]", "Δmean vs cot [95% CI]"]
    assert rows[0][0] == "cot" and rows[0][9] == "-" and rows[0][11] == "-"
    assert rows[1][9] == "+42.0 [+37.0, +47.0]" and rows[1][11] == "2.00"
    assert rows[1][12] == "5%"
    world_header, _ = A.table_rows(A.by_domain(s)["world"])
    assert world_header[2:5] == ["1-hop", "2-hop", "3-hop"]

    traj = T.trajectory_lines(s)
    assert traj[0].startswith(
        "chain_sum/agent: held-out 2.00 calls/problem, 5% invalid steps, 10% unanswered; "
        "training attempts 2.00 calls/problem, 20% invalid steps, 30% unanswered "
        "(round 0 -> 2: 0.5 -> 2.0 calls, 50% -> 10% invalid)"
    )
    assert traj[0].endswith("failed student calls/run: bad_arguments 4")
    assert not any(line.startswith("chain_sum/cot") for line in traj)


def _fake_run_one(calls):
    async def run_one(key, seed, config, extra=None):
        calls.append((key, seed, config.agent.enabled, config.domain.name))
        domain, arm = A.split_key(key)
        records = {(r["arm"], r["seed"]): r for r in _runs()}
        record = dict(records[key, seed])
        record.pop("domain"), record.pop("method")
        return {**record, "run_id": f"{key}-{seed}"}

    return run_one


def test_cli_with_fake_runs_prints_tables_verdicts_and_trajectories(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(core, "run_one", _fake_run_one(calls))
    out = tmp_path / "b"
    args = [
        "bench",
        "agents",
        "--seeds",
        "3",
        "--arms",
        "cot,agent",
        "--out",
        str(out),
        "--jobs",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert ("chain_sum/cot", 0, False, "reasoning_gym") in calls
    assert ("world/agent", 2, True, "world") in calls and len(calls) == 12
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("chain_sum: agent vs cot on the two hardest levels (L3, L4): +42.0")
        and line.endswith("met; the interval excludes zero")
        for line in lines
    ), result.stdout
    assert any(line.startswith("world: agent vs cot on 2-hop questions") for line in lines)
    assert any(line.startswith("world/agent: held-out 1.50 calls/problem") for line in lines)
    assert A.FTP_NOTE not in result.stdout  # no agent+ftp_sag arm was run
    assert "[+37.0, +47.0]" in result.stdout
    data = json.loads((out / "bench.json").read_text())
    assert {r["domain"] for r in data["runs"]} == {"chain_sum", "world"}
    assert data["arms"]["world/agent"]["arm"] == A.ARMS["agent"]
    assert data["arms"]["world/agent"]["domain"]["domain"]["name"] == "world"
    assert (out / "bench.png").stat().st_size > 5000

    calls.clear()
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0 and calls == []
    assert "12 of 12 runs already done" in again.stderr
    assert json.loads(again.stdout)["chain_sum/agent"]["paired_hard"]["n"] == 3


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_agents_bench_end_to_end(tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "agents", "--quick", "--arms", "cot,agent", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "bench.json").read_text())
    assert sorted((r["arm"], r["status"]) for r in data["runs"]) == sorted(
        (A.run_key(d, a), "completed") for d in A.DOMAINS for a in ("cot", "agent")
    )
    for r in data["runs"]:
        assert r["episodes"] == 48 and r["teacher_tokens"] > 0
        if r["method"] == "cot":
            assert not r["heldout_agent"] and not r["trajectories"]
        else:
            assert set(r["heldout_agent"]) == set(r["heldout_final"])
            assert r["trajectories"]["attempt"]["n"] == 48
            assert r["trajectories"]["demonstration"]["n"] > 0
    levels = {r["domain"]: set(r["heldout_final"]) for r in data["runs"]}
    assert levels == {"chain_sum": {"chain_sum@0", "chain_sum@1"}, "world": {"facts@0", "facts@1"}}
    assert "single seed is not evidence" in result.stdout and A.FTP_NOTE not in result.stdout
    assert any(line.startswith("world/agent: held-out ") for line in result.stdout.splitlines())
    assert (out / "bench.png").stat().st_size > 5000
