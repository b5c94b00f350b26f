"""Refinements written by the teacher and a co-evolving generator: parsing, the domain's check,
the scripted teacher, the loop on a real SQLite file, and the tiny generator learning the task."""

from __future__ import annotations

import asyncio
import random

import pytest

from pedagogy.agents.refinement import (
    REFINE_PROMPT,
    check_candidate,
    parse_reply,
    read_candidates,
    render_problems,
    training_pair,
)
from pedagogy.agents.roles import Generator, Teacher
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.domains.reasoning_gym import ReasoningGymDomain
from pedagogy.errors import ConfigError

LEVELS = {"chain_sum": [{"num_terms": 0, "num_digits": 0}, {"num_terms": 1, "num_digits": 1}]}


@pytest.fixture(scope="module")
def domain():
    return ReasoningGymDomain(skills=["chain_sum"], compact=True, levels=LEVELS)


@pytest.fixture(scope="module")
def parent(domain):
    (p,) = domain.generate(random.Random(0), 1, "chain_sum", 0)
    assert p.prompt == "9-5="
    return p


# -- parsing and the check ------------------------------------------------------------------------


def test_parse_reply_pairs_each_problem_line_with_its_answer_line():
    reply = "Here you go:\n1. 3+4=\nA: 7\n\n- 2+2=\nAnswer: 4\nno answer here\nProblem 3: 5-1=\nA:\nA: 9"
    assert parse_reply(reply) == [("3+4=", "7"), ("2+2=", "4")]
    assert parse_reply("") == [] and parse_reply("A: 3") == []


def test_check_accepts_a_right_answer_and_rejects_wrong_ones(domain, parent):
    ok = check_candidate(domain, parent, "6 + 2", "8", "teacher")
    assert ok.accepted and ok.reason == "" and ok.solved == "8"
    assert (ok.problem.prompt, ok.problem.answer) == ("6+2=", "8")
    assert (ok.problem.source, ok.problem.parent_id, ok.problem.arm) == (
        "teacher-refined",
        parent.id,
        parent.arm,
    )
    assert domain.solve(ok.problem) == "S:6+2=8\nA:8"

    wrong = check_candidate(domain, parent, "6+2=", "9", "teacher")
    assert not wrong.accepted and wrong.solved == "8"
    assert wrong.reason == "stated answer '9' is wrong; worked out: '8'"
    for text, why in [
        ("16+2=", "cannot read it as a chain_sum@0 problem"),  # wider than the level allows
        ("6+2+1=", "cannot read it as a chain_sum@0 problem"),  # more terms than the level
        ("7", "cannot read it"),  # no operation
        ("six plus two", "cannot read it"),
        ("9 - 5", "the failed problem itself"),
    ]:
        c = check_candidate(domain, parent, text, "4", "generator")
        assert not c.accepted and why in c.reason, (text, c.reason)
    assert wrong.id == ok.id  # the subject is the problem the domain read, whatever was stated
    unread = check_candidate(domain, parent, "six plus two", "8", "teacher")
    assert unread.problem is None and unread.id not in (ok.id, parent.id)


@pytest.mark.parametrize("compact", [True, False])
def test_the_domain_reads_its_own_problems_and_variants_back(compact):
    from pedagogy.domains.base import problem_variants, written_problem

    domain = ReasoningGymDomain(skills=["chain_sum"], compact=compact, levels=LEVELS)
    for level in (0, 1):
        for p in domain.generate(random.Random(level), 20, "chain_sum", level):
            read = written_problem(domain, p.prompt, p)
            assert (read.prompt, read.answer, read.arm) == (p.prompt, p.answer, p.arm)
            assert domain.verify(read, domain.solve(read)).correct
            for v in problem_variants(domain, p, random.Random(0), 2):
                assert written_problem(domain, v.prompt, p).answer == v.answer


async def test_scripted_teacher_refines_with_the_domains_variants(domain, parent):
    teacher = Teacher(ScriptedBackend.from_domain(domain))
    turn = await teacher.refine(parent, "3", 3, seed=7)
    content = turn.request["messages"][-1]["content"]
    assert "Problem: 9-5=" in content and "Student's answer: 3" in content
    assert "Write 3 new problems" in content and turn.request["purpose"] == "refine"
    assert turn.agent == "teacher" and turn.request["problem_id"] == parent.id
    got = read_candidates(domain, parent, turn.response, "teacher", 3, turn.id)
    assert len(got) == 3 and all(c.accepted for c in got), [c.reason for c in got]
    assert all(c.problem.prompt != parent.prompt and c.problem.prompt.count("-") == 1 for c in got)
    assert all(c.turn_id == turn.id for c in got)
    again = await teacher.refine(parent, "3", 3, seed=7)
    assert again.response == turn.response  # seeded: a rerun writes the same


async def test_a_teacher_with_wrong_arithmetic_is_rejected(domain, parent):
    teacher = Teacher(ScriptedBackend(["3+4=\nA: 8\n2+2=\nA: 4\n1+1=\nA: 2"]))
    turn = await teacher.refine(parent, "3", 2)
    got = read_candidates(domain, parent, turn.response, "teacher", 2)
    assert [(c.text, c.accepted) for c in got] == [("3+4=", False), ("2+2=", True)]  # third: over n


def test_training_pair_writes_exactly_the_accepted_problems(domain, parent):
    accepted = [
        check_candidate(domain, parent, t, a, "teacher").problem
        for t, a in [("1+2", "3"), ("8-9", "-1")]
    ]
    prompt, reply = training_pair(parent, "a long\nrambling answer " * 10, accepted)
    assert "Write 2 new problems" in prompt and "Problem: 9-5=" in prompt
    assert "\nStudent's answer: a long rambling answer a long rambling a\n" in prompt  # cut to 40
    assert reply == render_problems(accepted) == "1+2=\nA: 3\n8-9=\nA: -1"
    assert parse_reply(reply) == [("1+2=", "3"), ("8-9=", "-1")]


async def test_procedural_generator_cannot_refine(domain, parent):
    with pytest.raises(ConfigError, match="generator.kind: llm"):
        await Generator(domain).refine(parent, "3", 2)


# -- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, match",
    [
        (
            {"curriculum": {"refine": 0.25, "refine_by": "generator"}},
            "refine_by 'generator' needs an LLM generator; set generator.kind: llm",
        ),
        (
            {
                "curriculum": {"refine": 0.25, "refine_by": "teacher"},
                "generator": {
                    "kind": "llm",
                    "train": True,
                    "backend": {"kind": "transformers", "model": "tiny"},
                },
            },
            "generator.train learns to write refinements, but curriculum.refine_by is 'teacher'",
        ),
        (
            {"generator": {"kind": "llm", "pose": False, "backend": {"kind": "scripted"}}},
            "generator.pose: false leaves the LLM generator nothing to do",
        ),
        (
            {
                "curriculum": {"refine": 0.25, "refine_by": "teacher"},
                "domain": {"name": "jsonl", "options": {"path": "QA"}},
            },
            "domain 'jsonl' cannot read written problems",
        ),
        (
            {"generator": {"adapt": True}, "domain": {"name": "jsonl", "options": {"path": "QA"}}},
            "generator.adapt needs the generator settings of each problem, and domain 'jsonl' "
            "cannot tell them",
        ),
    ],
)
async def test_bad_combinations_fail_before_anything_is_written(tmp_path, overrides, match):
    from pedagogy.config import config_from_dict
    from pedagogy.memory.store import open_store
    from pedagogy.runner import run_loop

    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "1+1?", "answer": "2"}\n')
    domain = overrides.get("domain", {})
    if domain:
        domain["options"]["path"] = str(qa)
    config = config_from_dict({**overrides, "workdir": str(tmp_path), "rounds": 1})
    with pytest.raises(ConfigError, match=match):
        await run_loop(config)
    assert open_store(config.db_url()).list_runs() == []


@pytest.mark.parametrize(
    "section, match",
    [
        (
            {"curriculum": {"refine_by": "teacher"}},
            "refine_by 'teacher' does nothing while refine is 0",
        ),
        ({"curriculum": {"refine": 0.2, "refine_by": "student"}}, "curriculum.refine_by"),
        (
            {"generator": {"train": True}},
            "train: true needs a trainable generator .* got kind 'procedural'",
        ),
        (
            {
                "generator": {
                    "kind": "llm",
                    "train": True,
                    "backend": {"kind": "litellm", "model": "m"},
                }
            },
            "got backend.kind 'litellm'; use a transformers backend or set train: false",
        ),
        ({"generator": {"train_steps": 0}}, "generator.train_steps"),
    ],
)
def test_config_errors_name_the_value_and_the_fix(section, match):
    from pedagogy.config import config_from_dict

    with pytest.raises(ConfigError, match=match):
        config_from_dict(section)


def test_default_yaml_mirrors_the_new_options():
    import yaml

    from pedagogy.config import DEFAULT_CONFIG_PATH, GeneratorConfig, load_config

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    defaults = GeneratorConfig()
    for key in ("pose", "train", "train_steps", "train_seconds"):
        assert data["generator"][key] == getattr(defaults, key), key
    assert data["curriculum"]["refine_by"] == "domain" == load_config(None).curriculum.refine_by


# -- the loop -------------------------------------------------------------------------------------


class _Crash(Exception):
    pass


@pytest.mark.slow
async def test_teacher_refinements_in_a_two_round_loop(quick_config, tmp_path):
    """Round 2 poses checked teacher refinements of round 1's failures: stored with parent_id and
    source teacher-refined; every refine call is a turn outside the episodes; every candidate a
    decision. A crash right after round 2 is planned, then --resume: the rerun of plan_round poses
    the same refinements without asking the teacher again."""
    from pedagogy.config import load_config
    from pedagogy.memory.store import open_store
    from pedagogy.runner import run_loop

    config = load_config(
        quick_config(
            curriculum={"refine": 0.25, "refine_variants": 2, "refine_by": "teacher"},
            training={"max_steps": 10},
        )
    )

    def crash(kind: str, data: dict) -> None:
        if kind == "round_planned" and data["round"] == 2:
            assert (
                data["refined"] == 12 and data["refine_accepted"] == data["refine_candidates"] > 0
            )
            raise _Crash("killed right after round 2 was planned")

    with pytest.raises(_Crash):
        await run_loop(config, emit=crash)
    store = open_store(config.db_url())
    (run,) = store.list_runs()
    result = await run_loop(config, resume=run.id)
    assert result.status == "completed"
    run_id = result.run_id
    eps = store.episodes(run_id)
    assert sorted((e.round, e.index) for e in eps) == [(r, i) for r in (1, 2) for i in range(48)]
    problems = store.get_problems([e.problem_id for e in eps])
    failed_in_1 = {e.problem_id for e in eps if e.round == 1 and not e.correct_first}

    candidates = store.decisions(run_id, kind="refine_candidate")
    assert (
        candidates
        and {d.round for d in candidates} == {2}
        and {d.policy for d in candidates} == {"teacher"}
    )
    assert all(d.chosen for d in candidates)  # the scripted teacher's arithmetic is right
    posed = [d.subject for d in candidates if d.detail["posed"]]
    summary = store.decisions(run_id, kind="refine")
    assert {d.policy for d in summary} == {"teacher"}
    assert sorted(posed) == sorted(v for d in summary for v in d.detail["variants"])
    assert len(posed) == 12  # 25% of 48
    round_2 = {e.problem_id for e in eps if e.round == 2}
    for pid in posed:
        p = problems[pid]
        assert pid in round_2 and p.source == "teacher-refined" and p.parent_id in failed_in_1
        assert p.arm == problems[p.parent_id].arm

    turns = store.turns_outside_episodes(run_id)
    assert {t.agent for t in turns} == {"teacher"} and {t.request["purpose"] for t in turns} == {
        "refine"
    }
    assert {t.id for t in turns} == {d.detail["turn_id"] for d in candidates}
    by_turn = {t.id: t for t in turns}
    for d in candidates:  # the decision's candidate is in its turn's reply, for its parent
        turn = by_turn[d.detail["turn_id"]]
        assert (
            d.detail["text"] in turn.response and turn.request["problem_id"] == d.detail["parent"]
        )
        assert d.detail["parent"] in failed_in_1
    assert store.verify_chain(run_id) == []
    assert store.token_totals(run_id)["teacher"]["calls"] >= len(turns)


@pytest.mark.slow
@pytest.mark.timeout(600)  # two generator jobs and three student jobs: ~50 s at load 3
async def test_co_evolving_generator_trains_resumes_and_writes_with_its_newest_version(
    quick_config, tmp_path
):
    """refine_by generator with a tiny transformers generator that trains after each round: a
    crash right after round 2's generator job, then --resume: the job is neither lost nor
    redone, and round 3's refinements are written by the version trained in round 2."""
    from pedagogy.config import load_config
    from pedagogy.memory.store import open_store
    from pedagogy.runner import run_loop

    config = load_config(
        quick_config(
            rounds=3,
            curriculum={"refine": 0.25, "refine_variants": 2, "refine_by": "generator"},
            generator={
                "kind": "llm",
                "pose": False,
                "train": True,
                "train_steps": 60,
                # Step-bounded: the time limit must never bind, however busy the machine (the
                # test asserts 60 steps).
                "train_seconds": 3600,
                "backend": {
                    "kind": "transformers",
                    "model": "tiny",
                    "max_tokens": 40,
                    "temperature": 1.0,
                },
            },
        )
    )

    def crash(kind: str, data: dict) -> None:
        if kind == "generator_trained" and data["round"] == 2:
            raise _Crash("killed right after round 2's generator job")

    with pytest.raises(_Crash):
        await run_loop(config, emit=crash)
    store = open_store(config.db_url())
    (run,) = store.list_runs()
    events: list[tuple[str, dict]] = []
    resumed = await run_loop(config, resume=run.id, emit=lambda k, d: events.append((k, d)))
    assert resumed.status == "completed"
    assert [d["round"] for k, d in events if k == "generator_training_started"] == [3]

    jobs = [j for j in store.training_jobs(run.id) if j.config.get("role") == "generator"]
    assert [(j.round, j.status, j.kind) for j in jobs] == [
        (2, "completed", "sft"),
        (3, "completed", "sft"),
    ]
    versions = sorted(store.model_versions(run.id, "generator"), key=lambda v: v.number)
    assert [(v.number, v.status) for v in versions] == [
        (0, "base"),
        (1, "promoted"),
        (2, "promoted"),
    ]
    assert [v.parent_id for v in versions] == [None, versions[0].id, versions[1].id]
    assert [v.training_job_id for v in versions[1:]] == [j.id for j in jobs]
    assert [j.output_version_id for j in jobs] == [v.id for v in versions[1:]]
    for job in jobs:  # one example per teacher reply with an accepted candidate, up to that round
        teacher_replies = {
            d.detail["turn_id"]
            for d in store.decisions(run.id, kind="refine_candidate")
            if d.policy == "teacher" and d.chosen and d.round <= job.round
        }
        assert job.metrics["examples"] == len(teacher_replies) > 0
        assert job.metrics["steps"] == 60 and job.metrics["final_loss"] < job.metrics["first_loss"]
        # What it trained on is stored: the teacher's refine turns, outside episodes.
        items = store.dataset_items(job.id)
        assert {i.turn_id for i in items} == teacher_replies and len(items) == len(teacher_replies)
        assert all(i.episode_id is None and i.polarity == "positive" for i in items)
        assert all(i.prompt.startswith(REFINE_PROMPT.split("{", 1)[0]) for i in items)
    # The newest generator's audit reaches back through both jobs to the teacher's replies.
    from pedagogy.memory.export import training_records
    from pedagogy.memory.lineage import audit_model, lineage_graph

    audit = audit_model(store, versions[2].id)
    assert [j.id for j in audit.training_jobs] == [jobs[1].id, jobs[0].id]
    assert audit.n_episodes == 0 and audit.items_by_polarity["positive"] == sum(
        j.metrics["examples"] for j in jobs
    )
    refine_turns = {t.id for t in store.turns_outside_episodes(run.id) if t.agent == "teacher"}
    assert set(audit.turn_ids) <= refine_turns and audit.turn_ids
    graph = lineage_graph(store, run.id)
    assert all(graph.nodes[f"turn:{t}"].get("outside") for t in audit.turn_ids)
    # The student's exported training data holds none of the generator's examples.
    assert not {r["lineage"]["job_id"] for r in training_records(store, run.id)} & {
        j.id for j in jobs
    }

    turns = store.turns_outside_episodes(run.id)
    gen_turns = [t for t in turns if t.agent == "generator"]
    assert gen_turns and {t.request["purpose"] for t in gen_turns} == {"refine"}
    written_by = {t.id: t.model_version for t in gen_turns}
    candidates = store.decisions(run.id, kind="refine_candidate")
    by_round = {
        r: {
            written_by[d.detail["turn_id"]]
            for d in candidates
            if d.policy == "generator" and d.round == r
        }
        for r in (2, 3)
    }
    assert by_round == {2: {versions[0].id}, 3: {versions[1].id}}
    assert all(d.chosen is not None for d in candidates)
    posed = {p for d in store.decisions(run.id, kind="refine") for p in d.detail["variants"]}
    problems = store.get_problems(sorted(posed))
    assert posed and {p.source for p in problems.values()} <= {
        "teacher-refined",
        "generator-refined",
    }
    assert store.verify_chain(run.id) == []


# -- the generator learns the task ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)  # 100 steps on 200-character examples: ~30 s at load 3
async def test_tiny_generator_trained_on_accepted_teacher_refinements_gets_accepted(
    domain, tmp_path
):
    """An untrained tiny generator writes noise (nothing accepted); fine-tuned with the student's
    SFT path on the scripted teacher's accepted refinements, its REFINE replies become problems
    of the level, some with right answers, and its log-likelihood of held-out teacher replies
    rises."""
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.training.sft import SFTJobConfig, run_sft
    from pedagogy.training.tiny import build_tiny_student

    rng = random.Random(1)
    parents = list(
        {p.prompt: p for p in domain.generate(random.Random(0), 400, "chain_sum", 0)}.values()
    )
    train, held = parents[:-30], parents[-30:]
    teacher = Teacher(ScriptedBackend.from_domain(domain))

    def wrong(p):
        return str(int(p.answer) + rng.choice([-2, -1, 1, 2]))

    async def teacher_pairs(ps):
        pairs = []
        for p in ps:
            attempt = wrong(p)
            turn = await teacher.refine(p, attempt, 2, seed=rng.randrange(2**31))
            accepted = [
                c.problem
                for c in read_candidates(domain, p, turn.response, "teacher", 2)
                if c.accepted
            ]
            pairs.append(training_pair(p, attempt, accepted))
        return pairs

    pairs, held_pairs = await teacher_pairs(train), await teacher_pairs(held)

    async def measure(path):
        backend = TransformersBackend(str(path))
        generator = Generator(domain, backend, max_tokens=40, temperature=1.0)
        try:
            turns = await asyncio.gather(
                *(generator.refine(p, wrong(p), 2, seed=i) for i, p in enumerate(held * 4))
            )
        finally:
            await backend.aclose()
        got = [
            c
            for p, t in zip(held * 4, turns)
            for c in read_candidates(domain, p, t.response, "generator", 2)
        ]
        asked = 2 * len(turns)
        loglik = sum(
            backend.score([prompt for prompt, _ in held_pairs], [r for _, r in held_pairs])
        )
        return (
            sum(c.accepted for c in got) / asked,
            sum(c.problem is not None for c in got) / asked,
            loglik,
        )

    base = build_tiny_student(tmp_path / "generator-v0", seed=1)
    before = await measure(base)
    result = run_sft(
        base,
        tmp_path / "generator-v1",
        pairs,
        # 100 steps: readable 0.93, log-lik -2765 -> -514 (200 steps: 0.96, -462) at half the
        # cost; the assertions below hold with a wide margin either way.
        SFTJobConfig(max_steps=100, batch_size=16, learning_rate=3e-3, seed=0),
    )
    after = await measure(tmp_path / "generator-v1")
    print(
        f"accepted {before[0]:.3f} -> {after[0]:.3f}; readable {before[1]:.3f} -> {after[1]:.3f}; "
        f"held-out log-lik {before[2]:.0f} -> {after[2]:.0f}; {len(pairs)} pairs, "
        f"{result.steps} steps in {result.seconds:.1f} s"
    )
    assert before[0] == 0.0 and before[1] < 0.05
    assert after[1] > 0.8  # it writes problems of the level, in the reply format
    # How many of them it also answers right (accepted by the domain) is what one training run
    # happened to reach (0.02-0.1 across library releases): printed above, not asserted.
    assert after[2] > before[2] + 100 * len(held_pairs) / 10
