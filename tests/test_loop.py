"""The whole loop on a real SQLite file with the tiny model: run, show, replay, kill -9 + resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.memory.store import open_store

pytestmark = pytest.mark.slow
runner = CliRunner()


def _run_id(store):
    (run,) = store.list_runs()
    return run.id


def test_two_round_loop_show_replay_export_audit(quick_config, tmp_path):
    cfg = quick_config()
    db = str(tmp_path / "work" / "pedagogy.db")
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy per level" in result.output
    store = open_store(db)
    run_id = _run_id(store)
    assert store.get_run(run_id).status == "completed"
    png = tmp_path / "work" / "runs" / run_id / "learning_curve.png"
    assert png.stat().st_size > 1000

    eps = store.episodes(run_id)
    assert sorted((e.round, e.index) for e in eps) == [(r, i) for r in (1, 2) for i in range(48)]
    jobs = store.training_jobs(run_id)
    assert [j.status for j in jobs] == ["completed", "completed"]
    assert store.verify_chain(run_id) == []

    heatmap = tmp_path / "heatmap.png"
    shown = runner.invoke(app, ["show", run_id, "--db", db, "--json", "--heatmap", str(heatmap)])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    assert heatmap.stat().st_size > 1000
    for rd in summary["rounds"][1:]:  # what the curriculum planned, per arm, sums to one
        assert set(rd["probabilities"]) == {"chain_sum@0", "chain_sum@1"}
        assert abs(sum(rd["probabilities"].values()) - 1) < 1e-9
    planned = store.decisions(run_id, kind="curriculum")
    assert [(d.round, d.subject) for d in planned] == [
        (r, a) for r in (1, 2) for a in ("chain_sum@0", "chain_sum@1")
    ]
    rewards = store.decisions(run_id, kind="arm_reward")
    assert {d.round for d in rewards} == {1, 2} and all(d.value is not None for d in rewards)
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert set(summary["heldout_final"]) == {"chain_sum@0", "chain_sum@1"}
    assert summary["counts"]["episodes"] == 96
    assert summary["tokens"]["student"]["completion_tokens"] > 0
    assert len(summary["model_versions"]) == 3
    for rd in summary["rounds"][1:]:  # each round's decisions, counted by kind and outcome
        stored = store.decisions(run_id, rd["round"])
        assert sum(n for kind in rd["decisions"].values() for n in kind.values()) == len(stored)
        explained = sum(d.chosen for d in stored if d.kind == "intervention")
        assert rd["decisions"]["intervention"].get("chosen", 0) == explained == rd["explained"]
    text = runner.invoke(app, ["show", run_id, "--db", db])
    assert text.exit_code == 0, text.output
    assert (
        "(chain_sum@level)" in text.output and "@1" in text.output and "chain…" not in text.output
    )
    assert "intervention" in text.output and "arm_reward" in text.output

    rep = runner.invoke(app, ["replay", run_id, "--db", db, "--json"])
    assert rep.exit_code == 0, rep.output
    report = json.loads(rep.output)
    assert report == {**report, "episodes": 96, "model_calls": 0, "mismatches": 0}

    out = tmp_path / "export.jsonl"
    exp = runner.invoke(app, ["export", run_id, "--db", db, "--format", "jsonl", "--out", str(out)])
    assert exp.exit_code == 0, exp.output
    first = json.loads(out.read_text().splitlines()[0])
    assert first["messages"][-1]["role"] == "assistant" and first["lineage"]["run_id"] == run_id

    trained = [v for v in summary["model_versions"] if v["number"] == 2][0]
    aud = runner.invoke(app, ["audit", "model", trained["id"], "--db", db, "--json"])
    assert aud.exit_code == 0, aud.output
    assert aud.output.count(run_id) >= 1


def _pedagogy(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "pedagogy.cli", *args], **kw)


def test_sigkill_then_resume_runs_every_planned_episode_once(quick_config, tmp_path):
    cfg = quick_config(rounds=3, episodes={"per_round": 48, "write_batch": 8})
    db = str(tmp_path / "work" / "pedagogy.db")
    proc = _pedagogy(
        "run", "--config", str(cfg), "--quiet", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    killed_at = None
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if not Path(db).exists():
                continue
            store = open_store(db)
            runs = store.list_runs()
            if runs and len(store.episodes(runs[0].id, 2)) > 0:
                killed_at = len(store.episodes(runs[0].id))
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert killed_at is not None, "the run finished or stalled before it could be killed"
    store = open_store(db)
    run_id = _run_id(store)
    assert store.get_run(run_id).status == "running"  # killed: nothing could mark it
    resumed = subprocess.run(
        [sys.executable, "-m", "pedagogy.cli", "run", "--db", db, "--resume", run_id, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    store = open_store(db)
    eps = store.episodes(run_id)
    keys = [(e.round, e.index) for e in eps]
    assert len(keys) == len(set(keys))
    rounds = {r: sum(k[0] == r for k in keys) for r in (1, 2, 3)}
    state = (
        f"killed after {killed_at} episodes; episodes per round {rounds}; "
        f"jobs {[(j.round, j.status) for j in store.training_jobs(run_id)]}; resume stdout: {resumed.stdout[-1500:]} stderr: {resumed.stderr[-1500:]}"
    )
    assert sorted(keys) == [(r, i) for r in (1, 2, 3) for i in range(48)], state
    assert store.get_run(run_id).status == "completed"
    jobs = store.training_jobs(run_id)
    assert sum(j.status == "completed" for j in jobs) == 3


async def test_resume_after_a_node_finished_but_its_checkpoint_was_lost(quick_config, tmp_path):
    """A kill between a node's saved writes and the next checkpoint leaves the latest checkpoint
    with nothing 'next' although the loop is unfinished; --resume must still carry on."""
    import sqlite3

    from pedagogy.config import load_config
    from pedagogy.runner import run_loop

    config = load_config(quick_config())
    first = await run_loop(config)
    ckpt = first.run_dir / "checkpoints.sqlite"
    with sqlite3.connect(ckpt) as db:
        rows = db.execute("SELECT checkpoint_id, json_extract(metadata, '$.step') FROM checkpoints")
        steps = sorted((step, cid) for cid, step in rows)
        # Keep the checkpoints up to the one taken before round 2's train; train's writes stay
        # saved as that checkpoint's pending writes, the two checkpoints after it are dropped.
        keep = steps[-3][0]
        db.execute("DELETE FROM checkpoints WHERE json_extract(metadata, '$.step') > ?", (keep,))
    store = open_store(config.db_url())
    store.set_run_status(first.run_id, "running")
    events: list[tuple[str, dict]] = []
    resumed = await run_loop(config, resume=first.run_id, emit=lambda k, d: events.append((k, d)))
    assert resumed.status == "completed"
    # The run folder says which library versions each process that worked on it ran with.
    from importlib import metadata

    from pedagogy.environment import read_environment

    envs = read_environment(first.run_dir)
    assert [e["resumed"] for e in envs] == [False, True]
    assert envs[-1]["packages"]["transformers"] == metadata.version("transformers")
    assert envs[-1]["packages"]["torch"] == metadata.version("torch")
    decided = [d["round"] for k, d in events if k in ("promoted", "rolled_back")]
    assert decided == [2]  # round 2's candidate was evaluated, from train's saved writes
    assert not [k for k, _ in events if k == "training_started"]  # train itself did not rerun
    eps = store.episodes(first.run_id)
    assert sorted((e.round, e.index) for e in eps) == [(r, i) for r in (1, 2) for i in range(48)]


@pytest.mark.parametrize("kind", ["redi", "dpo"])
def test_learning_from_mistakes_trains_on_negatives(quick_config, tmp_path, kind):
    cfg = quick_config(training={"kind": kind, "max_steps": 10})
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    run_id = _run_id(store)
    jobs = store.training_jobs(run_id)
    assert jobs and all(j.kind == kind for j in jobs)
    trained = [j for j in jobs if j.status == "completed"]
    assert trained and all(j.output_version_id for j in trained)
    items = store.dataset_items(trained[0].id)
    # The student's wrong first attempts went into the job, with their lineage.
    assert {i.polarity for i in items} == {"positive", "negative"}


@pytest.mark.parametrize("style", ["probe", "adaptive"])
def test_styles_and_learnability_filter_are_applied_and_recorded(quick_config, tmp_path, style):
    cfg = quick_config(
        episodes={"per_round": 48, "style": style},
        # adaptive also lets the student rewrite what it cannot follow
        training={
            "filter": True,
            "filter_rewrite": style == "adaptive",
        },
    )
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    run_id = _run_id(store)
    eps = store.episodes(run_id, with_turns=True)
    styles = {x.style for e in eps for x in e.explanations}
    assert styles and styles <= {"worked", "concise", "detailed"}
    if style == "probe":
        probes = store.decisions(run_id, kind="style")
        assert [d.round for d in probes] == [1, 2]
        assert all(d.detail["winner"] in ("worked", "concise", "detailed") for d in probes)
        for d in probes:  # every explanation of a round is told in its probed style
            told = {x.style for e in eps if e.round == d.round for x in e.explanations}
            assert told <= {d.detail["winner"]}
    else:  # nothing measured yet in round 1: concise for the easiest level, detailed above
        told = {(e.arm, x.style) for e in eps if e.round == 1 for x in e.explanations}
        assert told == {("chain_sum@0", "concise"), ("chain_sum@1", "detailed")}
    filtered = store.decisions(run_id, kind="filter")
    teacher_turns = {t.id for e in eps for t in e.turns if t.agent == "teacher"}
    per_item = [d for d in filtered if d.detail["decision"] != "bypassed"]
    assert per_item and {d.subject for d in per_item} <= teacher_turns
    assert all(
        d.detail["decision"] in ("kept", "trimmed", "rewritten", "rejected", "bypassed")
        for d in filtered
    )
    # Every explanation that could not be trimmed got a rewrite attempt, and only then.
    tried = [d for d in per_item if "rewrite" in d.detail]
    if style == "adaptive":
        assert tried and all(d.detail["decision"] in ("rewritten", "rejected") for d in tried)
        assert {d.subject for d in per_item if d.detail["decision"] == "rejected"} <= {
            d.subject for d in tried
        }
        for job in store.training_jobs(run_id):  # a rewrite is trained on as the student wrote it
            completions = {i.turn_id: i.completion for i in store.dataset_items(job.id)}
            for d in tried:
                if d.round == job.round and d.detail["decision"] == "rewritten":
                    assert completions[d.subject].endswith(d.detail["rewrite"].strip())
    else:
        assert not tried
    # Rejected explanations never became training data.
    bypassed = {d.round for d in filtered if d.detail["decision"] == "bypassed"}
    for job in store.training_jobs(run_id):
        if job.round in bypassed:
            continue
        rejected = {d.subject for d in per_item if d.round == job.round and not d.chosen}
        assert not rejected & {i.turn_id for i in store.dataset_items(job.id)}


class _Crash(Exception):
    pass


async def test_resumed_run_makes_the_same_decisions_as_an_uninterrupted_one(quick_config, tmp_path):
    """Sampler and policy states (RNGs included) survive a crash right after a round's
    intervention decisions: the resumed run decides exactly as an uninterrupted one."""
    from pedagogy.config import load_config
    from pedagogy.runner import run_loop

    def config(name: str):
        path = quick_config(
            name=name,
            rounds=3,
            curriculum={"sampler": "bandit", "temperature": 0.05},
            generator={"adapt": True},  # poses by the student's success per generator setting
            episodes={"per_round": 32, "explain_budget": 6, "intervention": "random"},
            training={"max_steps": 8, "max_seconds": 600, "batch_size": 16},
            evaluation={"heldout_per_arm": 8},
        )
        return load_config(path)

    def decisions(store, run_id):
        index = {e.id: (e.round, e.index) for e in store.episodes(run_id)}
        chosen = sorted(
            (index[d.subject], d.chosen) for d in store.decisions(run_id, kind="intervention")
        )
        planned = [
            (d.round, d.subject, round(d.value, 12))
            for d in store.decisions(run_id, kind="curriculum")
        ]
        posed = sorted((e.round, e.index, e.problem_id) for e in store.episodes(run_id))
        cells = [
            (d.round, d.subject, d.detail["cells"])
            for d in store.decisions(run_id, kind="generator_params")
        ]
        return chosen, planned, posed, cells

    straight = await run_loop(config("straight"))

    def crash_in_round_2(kind: str, data: dict) -> None:
        if kind == "interventions_decided" and data["round"] == 2:
            raise _Crash("killed right after round 2's decisions")

    cfg = config("crashed")
    with pytest.raises(_Crash):
        await run_loop(cfg, emit=crash_in_round_2)
    store = open_store(cfg.db_url())
    crashed_id = next(r.id for r in store.list_runs() if r.name == "crashed")
    resumed = await run_loop(cfg, resume=crashed_id)
    assert resumed.status == "completed"
    a, b = decisions(store, straight.run_id), decisions(store, crashed_id)
    assert a[0] and a[1] and len(a[3]) >= 3
    assert b == a


def test_refinement_grounded_rewards_and_mistakes_in_the_teachers_prompt(quick_config, tmp_path):
    """Round 2 poses variants of round 1's failed problems (failure-driven refinement), the
    bandit is rewarded from the held-out accuracy of the student in service (grounded), and the
    teacher's prompt in round 2 shows the student's round-1 mistakes on the same arm."""
    cfg = quick_config(
        curriculum={"refine": 0.25, "refine_variants": 2, "grounded": True},
        episodes={"per_round": 48, "teacher_mistakes": 2},
    )
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    run_id = _run_id(store)
    eps = store.episodes(run_id)
    assert sorted((e.round, e.index) for e in eps) == [(r, i) for r in (1, 2) for i in range(48)]
    problems = store.get_problems([e.problem_id for e in eps])
    failed_in_1 = {e.problem_id for e in eps if e.round == 1 and not e.correct_first}
    decisions = store.decisions(run_id, kind="refine")
    assert {d.round for d in decisions} == {2} and {d.subject for d in decisions} <= failed_in_1
    refined_ids = [v for d in decisions for v in d.detail["variants"]]
    assert len(refined_ids) == len(set(refined_ids)) == 12  # 25% of 48, none in round 1
    round_2 = {e.problem_id for e in eps if e.round == 2}
    assert set(refined_ids) <= round_2
    assert {e.round for e in eps if problems[e.problem_id].source == "teacher-refined"} == {2}
    for pid in refined_ids:
        p = store.get_problems([pid])[pid]
        parent = store.get_problems([p.parent_id])[p.parent_id]
        assert p.source == "teacher-refined" and p.parent_id in failed_in_1 and p.arm == parent.arm
    assert all(d.value == len(d.detail["variants"]) <= 2 for d in decisions)

    # grounded: each round's arm rewards come from the in-service student's held-out evaluation
    versions = {v.id: v for v in store.model_versions(run_id, "student")}
    evals = store.evaluations(run_id)
    for rnd in (1, 2):
        rewards = store.decisions(run_id, rnd, "arm_reward")
        assert {d.subject for d in rewards} == {"chain_sum@0", "chain_sum@1"}
        # the student in service when round rnd's curriculum was updated: the newest promoted
        # (or base) version evaluated before that round
        in_service = [
            e
            for e in evals
            if e.round < rnd and versions[e.model_version_id].status in ("base", "promoted")
        ]
        latest = max(e.round for e in in_service)
        held = {f"{e.skill}@{e.level}": (e.correct, e.n) for e in in_service if e.round == latest}
        assert {d.subject: (d.detail["correct"], d.detail["attempted"]) for d in rewards} == held

    # mistakes: round-2 explain prompts list up to 2 round-1 wrong answers of the same arm
    full = store.episodes(run_id, with_turns=True)
    wrong_1 = {
        (problems[e.problem_id].prompt, e.arm) for e in full if e.round == 1 and not e.correct_first
    }
    explained = [(e, t) for e in full for t in e.turns if t.agent == "teacher"]
    assert explained
    for e, t in explained:
        content = t.request["messages"][-1]["content"]
        if e.round == 1:
            assert "earlier wrong answers" not in content
            continue
        head, _, listed = content.partition(
            "This student's earlier wrong answers to similar problems:\n"
        )
        shown = [line[2:].split(" -> ")[0] for line in listed.splitlines() if line.startswith("- ")]
        assert 1 <= len(shown) <= 2 and all((p, e.arm) in wrong_1 for p in shown), content
