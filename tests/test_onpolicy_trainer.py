"""`training.kind: onpolicy`: on-policy distillation as a trainer (the student samples, the
teacher scores every sampled token), and a run that trains with it and stores what it sampled
and how the teacher scored it as turns on its hash chain. Tiny real models, offline."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from pedagogy.errors import ConfigError
from pedagogy.training.onpolicy_trainer import OnPolicyJobConfig, OnPolicyTrainer
from tests.test_teacher_model import SMALL as SMALL_TEACHER

EXAMPLES = [(f"{a}+{b}=", f"S:{a}+{b}={a + b}\nA:{a + b}") for a in range(1, 5) for b in range(3)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny student and a differently seeded tiny teacher: the same character tokenizer."""
    from pedagogy.training.tiny import TinyStudentConfig, build_tiny_student

    root = tmp_path_factory.mktemp("onpolicy")
    student = build_tiny_student(root / "student", seed=0)
    teacher = build_tiny_student(root / "teacher", TinyStudentConfig(num_layers=1), seed=1)
    return str(student), str(teacher)


def _config(teacher: str | None, **kw) -> OnPolicyJobConfig:
    base = dict(
        teacher_path=teacher,
        max_steps=3,
        batch_size=2,
        max_new_tokens=12,
        seed=7,
        keep_samples=2,
        threads=1,
    )
    return OnPolicyJobConfig(**{**base, **kw})


def test_each_step_samples_scores_and_trains(models, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    student, teacher = models
    result = OnPolicyTrainer().train(student, EXAMPLES, tmp_path / "out", _config(teacher))
    assert result.kind == "onpolicy" and result.steps == 3 and math.isfinite(result.train_loss)
    assert result.metrics["on_policy_steps"] == 3.0
    assert len(result.samples) == 3 * 2 and [s["step"] for s in result.samples] == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    tok = AutoTokenizer.from_pretrained(student)
    for s in result.samples:
        assert len(s["teacher_logprobs"]) == len(s["token_ids"]) > 0
        assert all(v <= 0 for v in s["teacher_logprobs"])
        text = tok.decode([t for t in s["token_ids"] if t != tok.eos_token_id])
        assert text == s["completion"]
        assert s["prompt"] in dict(EXAMPLES)
    before = AutoModelForCausalLM.from_pretrained(student).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "out").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    again = OnPolicyTrainer().train(student, EXAMPLES, tmp_path / "again", _config(teacher))
    assert [s["token_ids"] for s in again.samples] == [s["token_ids"] for s in result.samples]
    assert "samples" not in result.to_dict()


def test_off_policy_steps_train_on_the_examples_own_completions(models, tmp_path):
    student, teacher = models
    result = OnPolicyTrainer().train(
        student, EXAMPLES, tmp_path / "out", _config(teacher, lmbda=0.0)
    )
    assert result.metrics["on_policy_steps"] == 0.0
    assert {s["completion"] for s in result.samples} <= {c for _, c in EXAMPLES}


def test_a_missing_or_mismatched_teacher_is_refused_with_the_fix(models, tmp_path):
    student, _ = models
    with pytest.raises(ConfigError, match="teacher.kind transformers"):
        OnPolicyTrainer().train(student, EXAMPLES, tmp_path / "a", _config(None))
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(student)
    cfg.vocab_size += 5  # another tokenizer's vocabulary
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match="shares the student's tokenizer"):
        OnPolicyTrainer().train(student, EXAMPLES, tmp_path / "b", _config(str(tmp_path / "other")))


def test_onpolicy_needs_a_teacher_model_before_the_run_starts(quick_config, tmp_path):
    from pedagogy.cli import app

    cfg = quick_config(training={"kind": "onpolicy"})
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2 and "training.kind onpolicy needs a teacher model" in result.output
    assert not (tmp_path / "work" / "pedagogy.db").exists()
    teacher = {"kind": "transformers", "model": "tiny-teacher"}
    cfg = quick_config(teacher=teacher, training={"kind": "onpolicy", "lora": True})
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2 and "LoRA is not supported" in result.output
    assert not (tmp_path / "work" / "pedagogy.db").exists()


def test_the_settings_are_checked_when_the_config_loads():
    from pedagogy.config import config_from_dict

    with pytest.raises(ConfigError, match="training.onpolicy.beta"):
        config_from_dict({"training": {"onpolicy": {"beta": 2}}})
    cfg = config_from_dict({"training": {"kind": "onpolicy", "onpolicy": {"lmbda": 0.5}}})
    assert cfg.training.onpolicy.lmbda == 0.5


@pytest.mark.slow
def test_a_run_taught_by_onpolicy_distillation_stores_samples_and_scores_on_its_chain(
    quick_config, tmp_path
):
    from pedagogy.cli import app
    from pedagogy.memory.store import open_store

    cfg = quick_config(
        rounds=1,
        teacher={
            "kind": "transformers",
            "model": "tiny-teacher",
            "max_tokens": 48,
            "options": {"tiny_teacher": SMALL_TEACHER, "threads": 1},
        },
        episodes={"per_round": 24, "write_batch": 24},
        training={
            "kind": "onpolicy",
            "max_steps": 3,
            "batch_size": 4,
            "onpolicy": {"max_new_tokens": 16, "keep_samples": 2},
        },
        evaluation={"heldout_per_arm": 8, "patience": None},
    )
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    db = str(tmp_path / "work" / "pedagogy.db")
    with open_store(db) as store:
        [run] = store.list_runs()
        [job] = store.training_jobs(run.id)
        assert job.kind == "onpolicy" and job.status == "completed"
        samples = [
            t
            for t in store.turns_outside_episodes(run.id)
            if t.request.get("purpose") == "onpolicy"
        ]
        assert len(samples) == 3 * 2
        assert all(t.request["job_id"] == job.id for t in samples)
        for t in samples:
            assert len(t.detail["teacher_logprobs"]) == len(t.detail["token_ids"])
        assert store.verify_chain(run.id) == []
    from fastapi.testclient import TestClient

    from pedagogy.viewer.app import create_app

    with TestClient(create_app(db)) as viewer:  # the samples, as the viewer lists them
        page = viewer.get(f"/runs/{run.id}/calls?purpose=onpolicy").text
    assert page.count("<tr>") == 1 + len(samples)
    means = [sum(t.detail["teacher_logprobs"]) / len(t.detail["teacher_logprobs"]) for t in samples]
    assert all(f"{m:.2f}" in page for m in means)
    audit = runner.invoke(app, ["audit", "verify", run.id, "--db", db])
    assert audit.exit_code == 0, audit.output
    replayed = runner.invoke(app, ["replay", run.id, "--db", db, "--json"])
    assert replayed.exit_code == 0, replayed.output
    report = json.loads(replayed.output)
    assert (report["model_calls"], report["mismatches"]) == (0, 0)
