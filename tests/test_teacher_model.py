"""The embedded teacher model (`teacher.model: tiny-teacher`): its cache key, its atomic cached
build, its shared tokenizer, its backend (generation, per-token log-probabilities, problem-only
explain prompts), config validation, and a short CLI run whose `show` lists its accuracy."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from pedagogy.backends.base import ChatRequest
from pedagogy.config import config_from_dict
from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError
from pedagogy.training import teacher_model as tm
from pedagogy.training.teacher_model import (
    MANIFEST,
    TeacherSpec,
    TinyTeacherConfig,
    ensure_teacher,
    teacher_key,
)

SMALL = {
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "intermediate_size": 64,
    "steps": 4,
    "batch_size": 8,
    "problems_per_arm": 24,
    "warmup_steps": 1,
}
"""A teacher that builds in a second or two: what these tests check holds for any size."""

LEVELS = [{"num_terms": 0, "num_digits": 0}, {"num_terms": 0, "num_digits": 1}]


def _domain_config() -> dict:
    return {
        "name": "reasoning_gym",
        "options": {"skills": ["chain_sum"], "compact": True, "levels": {"chain_sum": LEVELS}},
    }


@pytest.fixture(scope="module")
def domain():
    from pedagogy.graphs.parts import build_domain_from

    return build_domain_from(config_from_dict({"domain": _domain_config()}))


def _spec(**changes) -> TeacherSpec:
    spec = TeacherSpec(
        domain=_domain_config(),
        arms=("chain_sum@0", "chain_sum@1"),
        heldout_per_arm=8,
        heldout_seed=1000003,
    )
    return replace(spec, **changes)


@pytest.fixture(scope="module")
def built(tmp_path_factory, domain):
    """A small teacher built once for the module (read-only)."""
    root = tmp_path_factory.mktemp("teachers")
    return root, ensure_teacher(root, TinyTeacherConfig(**SMALL), _spec(), domain)


# -- the cache key ---------------------------------------------------------------------------


def test_the_key_changes_with_what_decides_the_teacher_and_only_with_it():
    base = teacher_key(TinyTeacherConfig(**SMALL), _spec())
    assert base == teacher_key(TinyTeacherConfig(**SMALL), _spec())  # deterministic
    assert len(base) == 16 and int(base, 16) >= 0
    changed = [
        TinyTeacherConfig(**{**SMALL, "hidden_size": 64}),
        TinyTeacherConfig(**{**SMALL, "steps": 5}),
        TinyTeacherConfig(**{**SMALL, "seed": 1}),
        TinyTeacherConfig(**{**SMALL, "learning_rate": 2e-3}),
    ]
    keys = {teacher_key(c, _spec()) for c in changed}
    keys |= {
        teacher_key(TinyTeacherConfig(**SMALL), s)
        for s in (
            _spec(arms=("chain_sum@0",)),
            _spec(heldout_seed=7),
            _spec(heldout_per_arm=9),
            _spec(domain={**_domain_config(), "options": {"skills": ["products"]}}),
        )
    }
    assert base not in keys and len(keys) == 8


def test_the_key_follows_the_library_versions(monkeypatch):
    base = teacher_key(TinyTeacherConfig(**SMALL), _spec())
    newer = {**tm.library_versions(), "torch": "99.0"}
    monkeypatch.setattr(tm, "library_versions", lambda: newer)
    assert teacher_key(TinyTeacherConfig(**SMALL), _spec()) != base


# -- the build and the cache -------------------------------------------------------------------


def test_a_build_saves_the_model_its_manifest_and_its_heldout_accuracy(built):
    root, teacher = built
    assert teacher.built and teacher.path == root / teacher.key
    manifest = json.loads((teacher.path / MANIFEST).read_text())
    assert manifest["key"] == teacher.key and manifest["steps"] == SMALL["steps"]
    assert set(teacher.heldout) == {"chain_sum@0", "chain_sum@1"}
    for correct, n in teacher.heldout.values():
        assert 0 <= correct <= n and n > 0
    assert manifest["build_cpu_seconds"] > 0
    assert (teacher.path / "config.json").is_file() and (teacher.path / "tokenizer.json").is_file()
    assert not any((root / ".building").iterdir())  # nothing half-built left behind


def test_a_second_call_loads_from_the_cache_without_training(built, domain, monkeypatch):
    root, first = built
    mtime = (first.path / MANIFEST).stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached teacher was trained again")

    monkeypatch.setattr(tm, "train_teacher", no_training)
    events = []
    again = ensure_teacher(
        root, TinyTeacherConfig(**SMALL), _spec(), domain, emit=lambda k, d: events.append(k)
    )
    assert not again.built and again.key == first.key and again.heldout == first.heldout
    assert (first.path / MANIFEST).stat().st_mtime_ns == mtime
    assert events == ["teacher_ready"]


def test_an_interrupted_build_leaves_no_cache_folder(tmp_path, domain, monkeypatch):
    def interrupted(folder, *args, **kwargs):
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "config.json").write_text("{}")  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(tm, "train_teacher", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_teacher(tmp_path, TinyTeacherConfig(**SMALL), _spec(), domain)
    assert [p.name for p in tmp_path.iterdir()] == [".building"]
    assert not any((tmp_path / ".building").iterdir())


def test_a_killed_builds_folder_is_removed_by_the_next_build(tmp_path, domain, monkeypatch):
    dead = tmp_path / ".building" / f"0123456789abcdef-{2**22 + 12345}-aaaaaa"
    dead.mkdir(parents=True)
    live = tmp_path / ".building" / f"0123456789abcdef-{os.getpid()}-bbbbbb"
    live.mkdir()
    monkeypatch.setattr(tm, "train_teacher", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        ensure_teacher(tmp_path, TinyTeacherConfig(**SMALL), _spec(), domain)
    assert not dead.exists() and live.exists()


def test_a_corrupt_manifest_names_the_folder_and_the_fix(tmp_path, domain):
    key = teacher_key(TinyTeacherConfig(**SMALL), _spec())
    (tmp_path / key).mkdir()
    (tmp_path / key / MANIFEST).write_text("{not json")
    with pytest.raises(Exception, match="delete the folder"):
        ensure_teacher(tmp_path, TinyTeacherConfig(**SMALL), _spec(), domain)


def test_training_data_leaves_out_the_heldout_prompts_and_weights_arms_alike(domain):
    from pedagogy.training.evaluate import build_heldout, heldout_prompts

    spec = _spec()
    heldout = heldout_prompts(
        build_heldout(domain, spec.arms, spec.heldout_per_arm, spec.heldout_seed)
    )
    pairs = tm.worked_solutions(domain, spec.arms, 50, 0, heldout)
    assert len(pairs) == 100 and not {p for p, _ in pairs} & heldout
    assert all(s.rstrip().splitlines()[-1].startswith("A:") for _, s in pairs)


# -- the shared tokenizer and the backend --------------------------------------------------------


def test_the_teacher_shares_the_students_token_ids(built, tmp_path):
    from transformers import AutoTokenizer

    from pedagogy.training.tiny import build_tiny_student

    student = AutoTokenizer.from_pretrained(build_tiny_student(tmp_path / "s"))
    teacher = AutoTokenizer.from_pretrained(built[1].path)
    assert student.get_vocab() == teacher.get_vocab()
    text = "12+34-5=\nS:12+34=46;46-5=41\nA:41"
    assert student(text)["input_ids"] == teacher(text)["input_ids"]
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        assert getattr(student, name) == getattr(teacher, name)


async def test_the_teacher_generates_and_scores_every_token(built):
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(built[1].path, threads=None)
    [reply] = await backend.generate([ChatRequest([{"role": "user", "content": "3+4="}], 12)])
    assert reply.error is None and reply.completion_tokens > 0
    prompts, continuations = ["3+4=", "12+5="], ["S:3+4=7\nA:7", "A:17"]
    per_token = backend.token_logprobs(prompts, continuations)
    assert [len(t) for t in per_token] == [len(c) for c in continuations]  # one per character
    assert all(math.isfinite(x) and x <= 0 for t in per_token for x in t)
    sums = backend.score(prompts, continuations)
    assert sums == pytest.approx([sum(t) for t in per_token], abs=1e-4)
    with pytest.raises(ConfigError, match="one continuation per prompt"):
        backend.token_logprobs(["a"], [])


async def test_an_explain_request_asks_the_teacher_the_problem(built):
    from pedagogy.agents.roles import Teacher
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.training.teacher_model import ReadsTheProblem

    inner = TransformersBackend(built[1].path, threads=None)
    seen = []
    generate = inner.generate

    async def spy(requests):
        seen.extend(requests)
        return await generate(requests)

    inner.generate = spy
    backend = ReadsTheProblem(inner)
    backend.version_id = "run-teacher-v0"
    problem = Problem("reasoning_gym", "chain_sum", 0, "3+4=", "7")
    turn = await Teacher(backend, max_tokens=16).explain(problem, "8", seq=1)
    assert [m["content"] for m in seen[0].messages] == ["3+4="]
    assert "A student got this problem wrong" in turn.request["messages"][0]["content"]
    assert turn.detail["asked"] == "problem" and turn.model_version == "run-teacher-v0"
    assert Teacher(backend).renders_styles  # a style is rendered from its worked solution


# -- the config --------------------------------------------------------------------------------


def _teacher(**options) -> dict:
    return {"teacher": {"kind": "transformers", "model": "tiny-teacher", "options": options}}


def test_a_bad_tiny_teacher_option_names_the_key_and_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        config_from_dict(_teacher(tiny_teacher={"hiden_size": 64}))
    text = str(err.value)
    assert "teacher.options.tiny_teacher.hiden_size" in text and "hidden_size" in text
    with pytest.raises(ConfigError, match="tiny_teacher.steps must be positive"):
        config_from_dict(_teacher(tiny_teacher={"steps": 0}))
    with pytest.raises(ConfigError, match="not divisible by num_heads"):
        config_from_dict(_teacher(tiny_teacher={"hidden_size": 30, "num_heads": 4}))


def test_the_teacher_model_name_and_its_options_belong_together():
    with pytest.raises(ConfigError, match="only teacher.model can name it"):
        config_from_dict({"student": {"kind": "transformers", "model": "tiny-teacher"}})
    with pytest.raises(ConfigError, match="read only with teacher.model: 'tiny-teacher'"):
        config_from_dict(
            {"teacher": {"kind": "transformers", "model": "x", "options": {"tiny_teacher": {}}}}
        )
    with pytest.raises(ConfigError, match="cannot demonstrate with tools"):
        config_from_dict({**_teacher(), "agent": {"enabled": True}})
    ok = config_from_dict(_teacher(tiny_teacher={"steps": 10}))
    assert ok.teacher.model == "tiny-teacher"


# -- a run --------------------------------------------------------------------------------------


def test_a_run_taught_by_the_teacher_model_records_and_shows_it(quick_config, tmp_path):
    from pedagogy.cli import app
    from pedagogy.memory.store import open_store

    cfg = quick_config(
        rounds=1,
        teacher={
            "kind": "transformers",
            "model": "tiny-teacher",
            "max_tokens": 48,
            "options": {"tiny_teacher": SMALL, "threads": 1},
        },
        episodes={"per_round": 24, "write_batch": 24},
        training={"max_steps": 4},
        evaluation={"heldout_per_arm": 8, "patience": None},
    )
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    db = str(tmp_path / "work" / "pedagogy.db")
    store = open_store(db)
    [run] = store.list_runs()
    [version] = store.model_versions(run.id, "teacher")
    assert version.status == "base" and version.path.startswith(str(tmp_path / "work" / "teachers"))
    key = os.path.basename(version.path)
    explains = [
        t for e in store.episodes(run.id, with_turns=True) for t in e.turns if t.agent == "teacher"
    ]
    assert explains and all(t.model_version == version.id for t in explains)
    store.close()
    shown = runner.invoke(app, ["show", run.id, "--db", db])
    assert shown.exit_code == 0, shown.output
    assert f"teacher: tiny-teacher {key} · held-out chain_sum@0" in shown.output
    data = json.loads(runner.invoke(app, ["show", run.id, "--db", db, "--json"]).output)
    assert data["teacher"]["key"] == key
    assert set(data["teacher"]["heldout"]) == {"chain_sum@0", "chain_sum@1"}
    audit = runner.invoke(app, ["audit", "verify", run.id, "--db", db])
    assert audit.exit_code == 0, audit.output
