"""Rollouts on Ray (`pedagogy.graphs.rollouts_ray`): a round's episodes on Ray actors give the
same run as in one process.

Fast part: the one-line errors (Ray not installed, no address). Slow part, skipped without Ray:
a tiny step-bounded two-round run with and without `ray.address: local` (a local cluster of 2
CPUs, two actors) records the same episodes and the same held-out accuracies; and a run whose
actor is SIGKILLed mid-round still records every planned episode exactly once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from pedagogy.config import RayConfig, config_from_dict, load_config
from pedagogy.errors import ConfigError
from pedagogy.memory import open_store
from tests.test_idempotent import SMALL

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
