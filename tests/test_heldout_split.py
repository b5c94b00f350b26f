"""Held-out sets never overlap practice; evaluation answers with the practice budget.

Real parts: a custom domain with small levels (no `level_capacity`, so their size is counted by
drawing), a real SQLite file, the scripted backend as a recording student, and in the slow test
a whole run with the tiny student and the scripted teacher.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from pedagogy.agents.roles import Student, Teacher, Verifier
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.config import load_config
from pedagogy.domains import register_domain
from pedagogy.domains.base import Problem, Verdict, extract_final_answer, level_size
from pedagogy.graphs.episode import Agents
from pedagogy.memory import ModelVersionRecord, RunRecord, open_store
from pedagogy.training.evaluate import build_heldout, heldout_prompts

SIZES = {0: 4, 1: 1, 2: 90}
"""Distinct problems per level: 2*x for x in range(1, size + 1), so the levels overlap."""


class Small:
    """Doubling with levels of 4, 1 and 90 distinct problems."""

    name = "small_levels"

    def skills(self):
        return ["double"]

    def levels(self, skill):
        return sorted(SIZES)

    def generate(self, rng, n, skill, level):
        xs = [rng.randint(1, SIZES[level]) for _ in range(n)]
        return [Problem(self.name, skill, level, f"2*{x}=", str(2 * x)) for x in xs]

    def parse_answer(self, response):
        return extract_final_answer(response)

    def verify(self, problem, response):
        answer = self.parse_answer(response)
        return Verdict(answer == problem.answer, float(answer == problem.answer), answer)

    def solve(self, problem):
        x = problem.prompt[2:-1]
        return f"S:{x}+{x}={problem.answer}\nA:{problem.answer}"


ARMS = [("double", 0), ("double", 1), ("double", 2)]


def test_level_size_counts_small_levels_only():
    domain = Small()
    assert level_size(domain, "double", 0, at_least=32) == 4
    assert level_size(domain, "double", 1, at_least=32) == 1
    assert level_size(domain, "double", 2, at_least=32) is None  # at least 32


def test_a_small_level_holds_out_a_part_and_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        heldout = build_heldout(Small(), ARMS, 8, seed=3)
        again = build_heldout(Small(), ARMS, 8, seed=3)
    # 4 distinct: a quarter held out, 3 left to practise; 1 distinct: nothing held out.
    assert len(heldout[("double", 0)]) == 1
    assert ("double", 1) not in heldout
    assert len(heldout[("double", 2)]) == 8  # 90 distinct: as many as asked
    # The levels overlap (1 is in all three, 1-4 in level 2): what a small level practises is
    # held out nowhere.
    smalls = {f"2*{x}=" for x in range(1, 5)}
    assert heldout[("double", 0)][0].prompt != "2*1="
    assert not smalls & {p.prompt for p in heldout[("double", 2)]}
    assert again == heldout  # fixed by its seed
    lines = [str(w.message) for w in caught][:2]
    assert len(caught) == 4 and all("\n" not in line for line in lines)
    assert "level double@0 has only 4 distinct problems" in lines[0]
    assert "1 held out, practice uses the other 3" in lines[0]
    assert "level double@1 has only 1 distinct problem " in lines[1]
    assert "too few to hold any out" in lines[1]


def test_a_large_enough_level_is_not_warned_about():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        heldout = build_heldout(Small(), [("double", 2)], 20, seed=3)
    # 90 distinct, at least 20 / 0.25 = 80: every one of the 20 asked is held out.
    assert len(heldout[("double", 2)]) == 20 and caught == []


def _session(tmp_path: Path, student: ScriptedBackend, evaluation: dict):
    from pedagogy.agents.roles import Generator
    from pedagogy.graphs.loop import Session

    domain = Small()
    config = load_config(None).with_overrides(
        {"student": {"max_tokens": 40}, "evaluation": evaluation}
    )
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    store.create_run(RunRecord("r", "heldout", {}, 0))
    store.add_model_version(ModelVersionRecord("v0", "r", "student", 0, "m", status="base"))
    agents = Agents(
        Student(student, max_tokens=config.student.max_tokens),
        Teacher(ScriptedBackend.from_domain(domain)),
        Verifier(domain),
    )
    heldout = build_heldout(domain, [("double", 2)], 6, seed=3)
    session = Session(
        config, "r", store, domain, agents, Generator(domain), student, heldout, [], tmp_path
    )
    return session, heldout


@pytest.mark.parametrize("configured, budget", [(None, 40), (100, 100)])
async def test_evaluation_answers_with_the_practice_budget_unless_configured(
    tmp_path, configured, budget
):
    from pedagogy.graphs.loop import evaluate_version

    student = ScriptedBackend(lambda request: "A:0")
    session, heldout = _session(tmp_path, student, {"max_tokens": configured})
    await evaluate_version(session, "v0", 0)
    asked = [r for r in student.calls if r.purpose == "evaluate"]
    assert len(asked) == 6 and {r.max_tokens for r in asked} == {budget}
    practice = session.agents.student.request(heldout[("double", 2)][0])
    assert practice.max_tokens == 40  # what it practises with
    session.store.close()


@pytest.mark.slow
async def test_no_held_out_problem_is_practised_in_a_run(tmp_path, restore_registries):
    from pedagogy.runner import run_loop

    register_domain("small_levels", lambda **options: Small(), replace=True)
    config = load_config(None).with_overrides(
        {
            "workdir": str(tmp_path / "work"),
            "db": str(tmp_path / "work" / "p.db"),
            "rounds": 1,
            "domain": {"name": "small_levels", "options": {}},
            "student": {"options": {"tiny": {}}},
            "episodes": {"per_round": 24},
            "training": {"max_steps": 2, "batch_size": 8},
            "evaluation": {"heldout_per_arm": 8},
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await run_loop(config)
    assert result.status == "completed"
    small = [str(w.message) for w in caught if "held-out set: level" in str(w.message)]
    assert len(small) == 2 and "double@0 has only 4" in small[0] and "double@1" in small[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held = heldout_prompts(build_heldout(Small(), ARMS, 8, config.evaluation.seed))
    with open_store(str(tmp_path / "work" / "p.db"), create=False) as store:
        episodes = store.episodes(result.run_id)
        practised = store.get_problems([e.problem_id for e in episodes])
        evaluations = store.evaluations(result.run_id)
    assert {e.arm for e in episodes} >= {"double@0", "double@2"}
    assert held and not held & {p.prompt for p in practised.values()}
    assert {(e.level, e.n) for e in evaluations} == {(0, 1), (2, 8)}
