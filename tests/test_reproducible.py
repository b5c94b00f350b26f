"""Reproducible runs: step-bounded training makes the same seed give the same held-out numbers;
a candidate worse than the student in service is rolled back and the served model stays."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from pedagogy.config import RunConfig, load_config
from pedagogy.domains import Problem, Verdict, register_domain
from pedagogy.memory.store import open_store
from pedagogy.runner import run_loop

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, name: str, **overrides) -> RunConfig:
    """A small run on 1-digit sums: 2 rounds of 128 episodes, 80-step jobs, the same seed."""
    work = tmp_path / name
    data = {
        "name": name,
        "rounds": 2,
        "workdir": str(work),
        "db": str(work / "pedagogy.db"),
        "domain": {
            "name": "reasoning_gym",
            "options": {
                "skills": ["chain_sum"],
                "compact": True,
                "levels": {"chain_sum": [{"num_terms": 0, "num_digits": 0}]},
            },
        },
        "student": {"options": {"tiny": {}}},
        "episodes": {"per_round": 128, "write_batch": 64},
        "training": {"max_steps": 80, "max_seconds": 600, "learning_rate": 3e-3},
        "evaluation": {"heldout_per_arm": 32},
    }
    return load_config(None).with_overrides(data).with_overrides(overrides)


def _weights(path: str) -> str:
    return hashlib.sha256((Path(path) / "model.safetensors").read_bytes()).hexdigest()


def _outcome(config: RunConfig) -> dict:
    result = asyncio.run(run_loop(config))
    assert result.status == "completed"
    store = open_store(config.db_url())
    run_id = result.run_id
    versions = store.model_versions(run_id, "student")
    return {
        "heldout": [(e.round, e.skill, e.level, e.n, e.correct) for e in store.evaluations(run_id)],
        "episodes": [
            (e.round, e.index, e.problem_id, e.outcome, e.explained)
            for e in sorted(store.episodes(run_id), key=lambda e: (e.round, e.index))
        ],
        "jobs": [
            (j.round, j.status, j.metrics["steps"], j.metrics["examples"], j.metrics["train_loss"])
            for j in store.training_jobs(run_id)
        ],
        "versions": [(v.number, v.status, _weights(v.path)) for v in versions],
    }


def test_the_same_seed_twice_gives_identical_heldout_evaluations(tmp_path):
    first = _outcome(_config(tmp_path, "first"))
    second = _outcome(_config(tmp_path, "second"))
    assert [steps for _, _, steps, _, _ in first["jobs"]] == [80, 80]  # bounded by steps
    assert first["heldout"] == second["heldout"]
    assert first["episodes"] == second["episodes"]
    assert first["jobs"] == second["jobs"]
    assert first["versions"] == second["versions"]  # byte-identical model weights


class Anything:
    """A domain whose every non-empty answer is right: a student's held-out accuracy is near 1
    whatever it learned, and 0 when it says nothing, as a model with zeroed weights does."""

    name = "anything"

    def skills(self):
        return ["say"]

    def levels(self, skill):
        return [0]

    def generate(self, rng, n, skill, level):
        xs = [rng.randrange(10**6) for _ in range(n)]
        return [Problem(self.name, skill, level, f"say {x}:", str(x)) for x in xs]

    def parse_answer(self, response):
        return response.strip() or None

    def verify(self, problem, response):
        said = self.parse_answer(response)
        return Verdict(said is not None, float(said is not None), said)

    def solve(self, problem):
        return f"A:{problem.answer}"


def test_a_worse_candidate_is_rolled_back_and_the_served_model_stays(
    tmp_path, monkeypatch, restore_registries
):
    """Round 2's candidate is corrupted (every weight zeroed after training, so it answers
    nothing): its held-out accuracy falls below the student in service, so it is rolled back,
    the served model stays, and round 3 is served by and trains from the round-1 student."""
    import torch
    from safetensors.torch import load_file, save_file

    import pedagogy.training.sft as sft

    register_domain("anything", lambda **options: Anything(), replace=True)
    real, jobs = sft.SFT.train, []

    def corrupting(self, base_path, items, output_dir, config=None, **kw):
        jobs.append(output_dir)
        result = real(self, base_path, items, output_dir, config, **kw)
        if len(jobs) == 2:
            weights = Path(output_dir) / "model.safetensors"
            save_file({k: torch.zeros_like(v) for k, v in load_file(weights).items()}, weights)
        return result

    monkeypatch.setattr(sft.SFT, "train", corrupting)  # the trainer the loop builds for sft
    config = _config(
        tmp_path,
        "rollback",
        rounds=3,
        domain={"name": "anything", "options": {}},
        episodes={"per_round": 32},
        training={"max_steps": 5},
        # Every round runs: the plateau stop would end the run after the rolled-back round.
        evaluation={"heldout_per_arm": 32, "tolerance": 0.5, "patience": None},
    )
    result = asyncio.run(run_loop(config))
    assert result.status == "completed" and len(jobs) == 3
    store = open_store(config.db_url())
    run_id = result.run_id
    v0, v1, v2, v3 = sorted(store.model_versions(run_id, "student"), key=lambda v: v.number)
    accuracy = {e.model_version_id: e.accuracy for e in store.evaluations(run_id)}
    assert accuracy[v2.id] == 0.0 and accuracy[v1.id] > 0.5, accuracy  # 0 < 1 - tolerance
    assert (v0.status, v1.status, v2.status) == ("base", "promoted", "rolled_back")
    served = {r: {e.student_version for e in store.episodes(run_id, r)} for r in (1, 2, 3)}
    assert served == {1: {v0.id}, 2: {v1.id}, 3: {v1.id}}  # v2 never served
    job2 = next(j for j in store.training_jobs(run_id) if j.round == 2)
    assert job2.status == "completed" and job2.output_version_id == v2.id
    assert v3.parent_id == v1.id  # round 3 trained the student in service, not v2
