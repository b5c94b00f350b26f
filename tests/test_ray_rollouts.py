"""Rollouts on Ray (`pedagogy.graphs.rollouts_ray`): a round's episodes on Ray actors give the
same run as in one process.

Fast part: the one-line errors (Ray not installed, no address). Slow part, skipped without Ray:
a tiny step-bounded two-round run with and without `ray.address: local` (a local cluster of 2
CPUs, two actors) records the same episodes and the same held-out accuracies; and a run whose
actor is SIGKILLed mid-round still records every planned episode exactly once. Then two whole
runs compared by every table's rows (`tests.test_idempotent._snapshot`) with an uninterrupted
in-process run: a `pedagogy run --ray local` process SIGKILLed while round 1's episodes run on its
actors and resumed with `--ray local` (no Ray process of the killed run outlives it for long, and
none disturbs the resume); and a run on Ray actors against a real PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from pedagogy.config import RayConfig, config_from_dict, load_config
from pedagogy.errors import ConfigError
from pedagogy.memory import open_store
from tests.test_idempotent import SMALL, _config_file, _pedagogy, _snapshot
from tests.test_idempotent import _run as _run_file

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason='Ray is not installed: pip install "pedagogy[ray]"'
)

LOCAL = {"address": "local", "actors": 2, "num_cpus": 2}


def _config(folder: Path, ray: dict[str, Any] | None = None):
    data = json.loads(json.dumps(SMALL))
    data.update(workdir=str(folder / "work"), db=str(folder / "work" / "pedagogy.db"))
    if ray is not None:
        data["ray"] = ray
    path = folder / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _outcomes(db_url: str, run_id: str) -> dict[str, Any]:
    """The run's episodes per (round, index) and its held-out accuracies per version number."""
    with open_store(db_url) as store:
        number = {v.id: v.number for v in store.model_versions(run_id)}
        episodes = {
            (e.round, e.index): (e.problem_id, e.outcome, e.correct_first, e.explained)
            for e in store.episodes(run_id)
        }
        heldout = sorted(
            (e.round, number[e.model_version_id], e.skill, e.level, e.correct, e.n)
            for e in store.evaluations(run_id)
        )
        intervened = sorted(
            (d.round, d.chosen) for d in store.decisions(run_id) if d.kind == "intervention"
        )
        promoted = sorted(
            (v.number, v.status) for v in store.model_versions(run_id) if v.role == "student"
        )
    return {
        "episodes": episodes,
        "heldout": heldout,
        "intervened": intervened,
        "promoted": promoted,
    }


def _run(config) -> Any:
    from pedagogy.runner import run_loop

    return asyncio.run(run_loop(config))


# -- fast -------------------------------------------------------------------------------------


def test_without_ray_installed_the_error_is_one_line_naming_the_extra(monkeypatch):
    from pedagogy.graphs import rollouts_ray

    monkeypatch.setattr(rollouts_ray.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as err:
        rollouts_ray.RayRollouts(RayConfig(address="local"), lambda *a: None, lambda a: None)
    message = str(err.value)
    assert "\n" not in message
    assert 'pip install "pedagogy[ray]"' in message and "'local'" in message


def test_a_run_without_ray_installed_stops_before_writing_anything(tmp_path, monkeypatch):
    from pedagogy.graphs import rollouts_ray

    monkeypatch.setattr(rollouts_ray.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pedagogy\[ray\]"):
        _run(_config(tmp_path, LOCAL))
    assert not (tmp_path / "work" / "pedagogy.db").exists()


def test_the_ray_section_defaults_to_in_process():
    cfg = config_from_dict({}, "test")
    assert cfg.ray.address is None and cfg.ray.actors >= 1
    with pytest.raises(ConfigError, match="ray.actors"):
        config_from_dict({"ray": {"actors": 0}}, "test")


# -- slow: whole runs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("in-process")
    result = _run(_config(folder))
    assert result.status == "completed"
    return _outcomes(result.db_url, result.run_id)


@pytest.mark.slow
@pytest.mark.timeout(900)  # Ray on a busy machine: minutes; idle: under 90 s
@needs_ray
def test_a_run_on_ray_actors_records_what_a_run_in_one_process_does(tmp_path, in_process):
    result = _run(_config(tmp_path, LOCAL))
    assert result.status == "completed"
    on_ray = _outcomes(result.db_url, result.run_id)
    assert len(on_ray["episodes"]) == 2 * SMALL["episodes"]["per_round"]
    assert on_ray == in_process
    import ray

    assert not ray.is_initialized()  # the run's own local cluster is stopped with it


@pytest.mark.slow
@pytest.mark.timeout(900)  # Ray on a busy machine: minutes; idle: under 90 s
@needs_ray
def test_an_actor_killed_mid_round_is_replaced_and_every_episode_recorded_once(
    tmp_path, monkeypatch, in_process
):
    """Actor 0's process is SIGKILLed while its share of round 1 runs: its share runs again on
    a fresh actor, and the run records what a run in one process does."""
    import ray

    from pedagogy.graphs import rollouts_ray

    original = rollouts_ray.RayRollouts._share
    killed: list[int] = []
    made: list[Any] = []

    async def share(self, k, items, ctx, broker):
        made.append(self)
        if k == 0 and ctx.round == 1 and not killed:
            actor = self.actors[0]
            pid = await actor.pid.remote()
            await actor.start.remote(ctx, items, None)  # its episodes are under way
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            with pytest.raises(ray.exceptions.RayActorError):
                await actor.settled.remote()
        return await original(self, k, items, ctx, broker)

    monkeypatch.setattr(rollouts_ray.RayRollouts, "_share", share)
    result = _run(_config(tmp_path, LOCAL))
    assert result.status == "completed"
    assert killed and made[-1].restarts == 1
    assert _outcomes(result.db_url, result.run_id) == in_process


# -- slow: the driver killed and resumed; PostgreSQL ---------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted in-process run of `SMALL` (SQLite): its `_snapshot`."""
    folder = tmp_path_factory.mktemp("reference")
    result = _run_file(_config_file(folder, "reference"))
    assert result.status == "completed"
    with open_store(result.db_url) as store:
        return _snapshot(store, result.run_id)


def _audit_clean(db: str, run_id: str) -> None:
    from typer.testing import CliRunner

    from pedagogy.cli import app
    from pedagogy.memory.chain import KEY_ENV

    said = CliRunner().invoke(app, ["audit", "verify", run_id, "--db", db], env={KEY_ENV: None})
    assert said.exit_code == 0 and "TAMPERED" not in said.output, said.output


def _round_under_way(db: Path, round_: int) -> int | None:
    """None until the round's intervention decisions or first episodes are stored (its
    episodes are then on the actors); then how many of its episodes are stored."""
    if not db.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            q = "SELECT count(*) FROM {} WHERE round = ?"
            (episodes,) = conn.execute(q.format("episodes"), (round_,)).fetchone()
            decided = conn.execute(
                q.format("decisions") + " AND kind = 'intervention'", (round_,)
            ).fetchone()[0]
    except sqlite3.Error:  # no schema yet, or locked for a moment
        return None
    return episodes if episodes or decided else None


def _name(process: Any) -> str:
    try:
        return process.name()
    except Exception:  # it ended meanwhile
        return "?"


@pytest.mark.slow
@needs_ray
@pytest.mark.timeout(900)
def test_a_ray_driver_killed_mid_round_then_resumed_ends_as_an_uninterrupted_run(
    reference, tmp_path
):
    """`pedagogy run --ray local` is SIGKILLed once round 1's episodes are on its actors (its
    decisions or first episodes stored, not all of them); `pedagogy run --resume --ray local`
    then finishes the run: the same rows, held-out numbers, weights and chain order as an
    uninterrupted in-process run, and a clean audit. The killed driver's Ray processes (its
    cluster, agents and actors) are all gone, and the resume ran beside whatever was left."""
    import psutil

    config = _config_file(tmp_path, "killed")
    db = tmp_path / "work" / "pedagogy.db"
    driver, out = _pedagogy(tmp_path, 0, "run", "-c", str(config), "--ray", "local", "--quiet")
    family: list[psutil.Process] = []
    stored, deadline = None, time.monotonic() + 300
    while stored is None:
        assert driver.is_alive(), out.read_text()[-3000:]
        assert time.monotonic() < deadline, "round 1 never started on the actors"
        try:
            family = psutil.Process(driver.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        stored = _round_under_way(db, 1)
        time.sleep(0.02)
    names = sorted(_name(p) for p in family)
    os.kill(driver.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    driver.join(30)
    assert driver.exitcode == -signal.SIGKILL
    actors = [n for n in names if n.startswith("ray::RolloutWorker")]  # "...Worker.results"
    assert len(actors) == 2, names  # its actors were running
    with open_store(db) as store:
        (run,) = store.list_runs()
        episodes = len(store.episodes(run.id, 1))
    assert episodes < SMALL["episodes"]["per_round"], "killed after round 1's episodes"

    resume, out = _pedagogy(
        tmp_path, 1, "run", "--db", str(db), "--resume", run.id, "--ray", "local", "--quiet"
    )
    resume.join(600)
    assert resume.exitcode == 0, out.read_text()[-3000:]
    with open_store(db) as store:
        assert _snapshot(store, run.id) == reference
    _audit_clean(str(db), run.id)
    # Every process of the killed driver's cluster ends: its GCS, raylet and actors with it, and
    # Ray's two per-node agents once their report of the raylet's death to the (dead) GCS times
    # out, about a minute after the kill. They sit idle till then and hold nothing of the run.
    # At least another minute and a half however long the resume took (a loaded machine slows
    # their shutdown as much as the resume).
    limit = max(90.0, 180 - (time.monotonic() - killed_at))
    _, alive = psutil.wait_procs(family, timeout=limit)
    assert not alive, [(p.pid, _name(p)) for p in alive]
    print(
        f"killed with {episodes} of round 1's episodes stored; its Ray processes {names}, all "
        f"gone {time.monotonic() - killed_at:.0f} s after the kill"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # Ray on a busy machine: minutes; idle: under 90 s
@pytest.mark.postgres
@needs_ray
def test_a_run_on_ray_actors_against_postgresql_ends_as_an_in_process_sqlite_run(
    reference, tmp_path, postgres_database
):
    """The same run on Ray actors, its store on a real PostgreSQL server: every table's rows,
    held-out numbers, weights and chain order as the in-process SQLite run, and a clean audit."""
    config = _config_file(tmp_path, "postgres", db=postgres_database)
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "ray": LOCAL}))
    result = _run_file(config)
    assert result.status == "completed"
    with open_store(postgres_database) as store:
        assert _snapshot(store, result.run_id) == reference
    _audit_clean(postgres_database, result.run_id)


@pytest.mark.slow
@pytest.mark.timeout(900)  # Ray on a busy machine: minutes; idle: under a minute
@needs_ray
def test_the_breakers_of_backends_on_actors_are_stored_as_the_rounds_decisions(tmp_path):
    """A teacher whose primary endpoint is dead: each actor's own breaker opens after its own 3
    connection failures, and the driver stores each opening as a `circuit` decision with the
    actor's number, as it stores its own breakers' changes."""
    from pedagogy.testing import OpenAICompatServer
    from tests.test_api_teacher import teacher
    from tests.test_litellm_breaker import closed_port

    port = closed_port()
    primary = f"openai/teacher@http://127.0.0.1:{port}/v1"
    with OpenAICompatServer(teacher) as fallback:
        config = _config(tmp_path, LOCAL).model_copy(
            update={
                "rounds": 1,
                "teacher": config_from_dict(
                    {
                        "teacher": {
                            "kind": "litellm",
                            "model": "openai/teacher",
                            "api_base": f"http://127.0.0.1:{port}/v1",
                            "options": {
                                "fallbacks": [
                                    {"model": "openai/teacher", "api_base": fallback.base_url}
                                ],
                                "breaker_cooldown_s": 3600,
                            },
                        }
                    },
                    "test",
                ).teacher,
            }
        )
        result = _run(config)
    assert result.status == "completed"
    with open_store(result.db_url) as store:
        circuit = store.decisions(result.run_id, kind="circuit")
        episodes = store.episodes(result.run_id, with_turns=True)
        assert store.verify_chain(result.run_id) == []
    remote = [d for d in circuit if "actor" in d.detail]
    # every actor that called the teacher opened its own breaker once, within the hour's cool-down
    called = {d.detail["actor"] for d in remote}
    assert remote and called <= {0, 1}
    assert sorted(
        (d.detail["actor"], d.subject, d.chosen, d.value, d.detail["state"], d.detail["role"])
        for d in remote
    ) == [(k, primary, False, 3.0, "open", "teacher") for k in sorted(called)]
    opened_in_turns = [
        t
        for e in episodes
        for t in e.turns
        if any(ev["state"] == "open" for ev in t.detail.get("circuit", {}).get("events", []))
    ]
    assert len(opened_in_turns) == len(remote)  # the turn during which each opened says so too


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_ray
def test_bench_rollouts_times_round_two_in_process_and_on_actors():
    from pedagogy.benchmarks.rollouts import rollouts_vs_actors

    report = rollouts_vs_actors((1,), episodes=8, latency_s=0.05)
    assert [r["actors"] for r in report["rows"]] == [0, 1]
    for row in report["rows"]:
        assert row["episodes"] == 8 and row["episodes_per_s"] > 0
        assert row["driver_cpu_ms_per_episode"] > 0
    assert report["rows"][0]["vs_in_process"] == 1.0


def test_bench_rollouts_refuses_bad_sizes_in_one_line():
    from typer.testing import CliRunner

    from pedagogy.cli import app

    result = CliRunner().invoke(app, ["bench", "rollouts", "--actors", "1,two"])
    assert result.exit_code == 2 and "--actors takes comma-separated integers" in result.output
    if HAS_RAY:
        result = CliRunner().invoke(app, ["bench", "rollouts", "--actors", "0"])
        assert result.exit_code == 2 and "every actor count >= 1" in result.output


def test_an_actors_share_of_the_held_out_set_is_measured_as_in_one_process(tmp_path):
    """`RolloutWorker.evaluate` (the body of a Ray actor, here without Ray): the held-out set
    shared out by index, problem i run with seed i, counts per arm exactly what the driver's
    own evaluation counts, for an acting student (real tools, seeded steps) and a text one."""
    from pedagogy.assembly import build_agents
    from pedagogy.graphs.episode import build_episode_graph
    from pedagogy.graphs.rollouts_ray import Recipe, RolloutWorker
    from pedagogy.run_checks import domain_arms
    from pedagogy.run_models import acting_context, local_model
    from pedagogy.training.evaluate import (
        build_heldout,
        evaluate,
        evaluate_agent,
        flatten,
        tally,
        tally_agent,
    )

    data = json.loads(json.dumps(SMALL))
    # sampled steps on held-out problems (SAG): the seeds decide them, so a share must keep each
    # problem's own seed
    data["agent"] = {"enabled": True, "max_steps": 3, "sag_n": 3}
    (tmp_path / "acting.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "acting.yaml")
    path = local_model(
        config.student, tmp_path / "student", 0, "student", context=acting_context(config)
    )
    worker = RolloutWorker(
        Recipe(config.model_dump(), build_agents, build_episode_graph), path, "v0"
    )
    heldout = build_heldout(worker.domain, domain_arms(config, worker.domain), 6, seed=5)
    flat = flatten(heldout)
    keys = [k for k, _ in flat]

    def shared(acting: bool, budget: int) -> list:
        out: list = [None] * len(flat)
        for k in range(2):  # two actors' shares, by index
            items = [(i, flat[i][1]) for i in range(k, len(flat), 2)]
            results = asyncio.run(worker.evaluate(path, "v0", items, budget, acting))
            for (i, _), r in zip(items, results):
                out[i] = r
        return out

    actor = getattr(worker.agents, "eval_actor", None) or worker.agents.actor
    seeds: list[tuple[str, int]] = []
    run = actor.run

    async def recording(problem, **kw):
        seeds.append((problem.prompt, kw["seed"]))
        return await run(problem, **kw)

    actor.run = recording
    whole = asyncio.run(evaluate_agent(actor, worker.domain, heldout))
    whole_seeds, seeds[:] = sorted(seeds), []
    assert tally_agent(heldout, keys, shared(True, 0)) == whole
    assert sorted(seeds) == whole_seeds == sorted((p.prompt, i) for i, (_, p) in enumerate(flat))
    assert sum(r.n for r in whole.values()) == len(flat) > 0
    text = asyncio.run(evaluate(worker.student, worker.domain, heldout, max_tokens=16))
    assert tally(heldout, keys, shared(False, 16)) == text
