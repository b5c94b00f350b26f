"""Domain conformance suite (every built-in and a custom one) plus the arithmetic solver."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from pedagogy.domains import (
    MEASURED_CHAIN_SUM_LEVELS,
    Domain,
    ExpressionError,
    JsonlDomain,
    Problem,
    ReasoningGymDomain,
    Verdict,
    build_domain,
    compact_expression,
    evaluate,
    known_domains,
    register_domain,
    solve_steps,
    worked_solution,
)
from pedagogy.domains import registry as domain_registry
from pedagogy.errors import ConfigError, UnknownNameError
from pedagogy.registry import Registry

# -- a custom domain, as a user would write one ----------------------------------------------


class ParityDomain:
    """Is n even? Level = number of digits - 1."""

    name = "parity"

    def skills(self) -> list[str]:
        return ["parity"]

    def levels(self, skill: str) -> list[int]:
        return [0, 1, 2]

    def generate(self, rng: random.Random, n: int, skill: str, level: int) -> list[Problem]:
        out = []
        for _ in range(n):
            value = rng.randrange(10**level, 10 ** (level + 1))
            answer = "yes" if value % 2 == 0 else "no"
            out.append(Problem(self.name, skill, level, f"is {value} even?", answer))
        return out

    def parse_answer(self, response: str) -> str | None:
        from pedagogy.domains import extract_final_answer

        return extract_final_answer(response)

    def verify(self, problem: Problem, response: str) -> Verdict:
        parsed = self.parse_answer(response or "")
        ok = parsed is not None and parsed.strip().lower() == problem.answer
        return Verdict(ok, float(ok), parsed)

    def solve(self, problem: Problem) -> str | None:
        return f"A:{problem.answer}"


JSONL_ROWS = [
    {"question": "2+2=", "answer": "4", "skill": "add", "level": 0, "solution": "S:2+2=4\nA:4"},
    {"question": "3+4=", "answer": "7", "skill": "add", "level": 0, "solution": "S:3+4=7\nA:7"},
    {"question": "12+30=", "answer": "42", "skill": "add", "level": 1},
    {"question": "Capital of France?", "answer": "Paris", "skill": "geo", "level": 0},
    {"question": "Capital of Italy?", "answer": "Rome", "skill": "geo", "level": 0},
]


def write_jsonl(path: Path, rows: list[dict] | list[str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


DOMAINS = {
    "chain_sum_compact": lambda tmp: ReasoningGymDomain(["chain_sum"], compact=True),
    "basic_arithmetic": lambda tmp: ReasoningGymDomain(["basic_arithmetic"]),
    "leg_counting_answer_only": lambda tmp: ReasoningGymDomain(
        ["leg_counting"], answer_only_solutions=True
    ),
    "spell_backward": lambda tmp: ReasoningGymDomain(["spell_backward"]),
    "jsonl": lambda tmp: JsonlDomain(write_jsonl(tmp / "qa.jsonl", JSONL_ROWS)),
    "custom": lambda tmp: ParityDomain(),
    "world": lambda tmp: build_domain("world", seed=0, n_entities=60),
    "code": lambda tmp: build_domain("code"),
}


@pytest.fixture(params=sorted(DOMAINS))
def domain(request, tmp_path) -> Domain:
    return DOMAINS[request.param](tmp_path)


def arms(domain: Domain) -> list[tuple[str, int]]:
    return [(s, lv) for s in domain.skills() for lv in domain.levels(s)]


def wrong_answer(answer: str) -> str:
    try:
        return str(int(answer) + 1)
    except ValueError:
        pass
    try:
        return str(float(answer) + 1.5)
    except ValueError:
        return "#" * max(len(answer), 3)


# -- conformance -----------------------------------------------------------------------------


def test_is_a_domain_with_skills_and_levels(domain):
    assert isinstance(domain, Domain)
    assert isinstance(domain.name, str) and domain.name
    assert domain.skills()
    for skill in domain.skills():
        levels = domain.levels(skill)
        assert levels and levels == sorted(levels) and all(isinstance(lv, int) for lv in levels)


def test_generate_is_deterministic_and_of_the_requested_arm(domain):
    for skill, level in arms(domain)[:3]:
        first = domain.generate(random.Random(7), 6, skill, level)
        again = domain.generate(random.Random(7), 6, skill, level)
        assert len(first) == 6
        assert [p.id for p in first] == [p.id for p in again]
        assert [(p.prompt, p.answer) for p in first] == [(p.prompt, p.answer) for p in again]
        for p in first:
            assert (p.domain, p.skill, p.level) == (domain.name, skill, level)
            assert p.prompt and isinstance(p.answer, str)
            json.dumps(p.metadata)  # must be storable


def test_different_seeds_give_different_batches(domain):
    skill, level = arms(domain)[-1]
    a = domain.generate(random.Random(1), 8, skill, level)
    b = domain.generate(random.Random(2), 8, skill, level)
    assert [p.id for p in a] != [p.id for p in b]


def test_solutions_verify_and_wrong_answers_do_not(domain):
    solved = 0
    for skill, level in arms(domain)[:3]:
        for problem in domain.generate(random.Random(3), 5, skill, level):
            solution = domain.solve(problem)
            if solution is not None:
                verdict = domain.verify(problem, solution)
                assert verdict.correct, (problem, solution, verdict)
                assert verdict.score == 1.0
                solved += 1
            wrong = domain.verify(problem, f"A:{wrong_answer(problem.answer)}")
            assert not wrong.correct and wrong.score < 1.0
    assert solved, "this domain should solve its own problems"


@pytest.mark.parametrize(
    "response", ["", "   \n ", "A:", "<answer></answer>", "\x00\x01\ufffd", "A: ]]{{(" * 50, "🙂"]
)
def test_garbage_is_incorrect_and_never_raises(domain, response):
    skill, level = arms(domain)[0]
    for problem in domain.generate(random.Random(5), 3, skill, level):
        verdict = domain.verify(problem, response)
        assert isinstance(verdict, Verdict)
        assert not verdict.correct and 0.0 <= verdict.score < 1.0


def test_problem_id_is_stable_across_storage(domain):
    skill, level = arms(domain)[0]
    problem = domain.generate(random.Random(11), 1, skill, level)[0]
    stored = json.loads(json.dumps({**problem.__dict__}))
    restored = Problem(**stored)
    assert restored.id == problem.id and len(problem.id) == 16
    # A problem read back from the database verifies like the fresh one.
    solution = domain.solve(problem) or f"A:{problem.answer}"
    assert domain.verify(restored, solution) == domain.verify(problem, solution)


# -- the arithmetic solver -------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("4 - 1 - 7", "S:4-1=3;3-7=-4\nA:-4"),
        ("57 + 87 + 70", "S:57+87=144;144+70=214\nA:214"),
        ("1 + 5", "S:1+5=6\nA:6"),
        ("2 - -1", "S:2--1=3\nA:3"),
        ("( 56 + -33 ) - 84", "S:56+-33=23;23-84=-61\nA:-61"),
        ("2 + 3 * 4", "S:3*4=12;2+12=14\nA:14"),
        ("2 * 3 + 4 * 5", "S:2*3=6;4*5=20;6+20=26\nA:26"),
        ("8 / 2 / 2", "S:8/2=4;4/2=2\nA:2"),
        ("-( 3 + 4 ) * 2", "S:3+4=7;-7*2=-14\nA:-14"),
        # a leading negation that is the last operation is a step (it was dropped: 7*4=28, A:-28)
        ("-( 7 * 4 )", "S:7*4=28;-(28)=-28\nA:-28"),
        ("-(-( 2 + 3 ))", "S:2+3=5;-(-5)=5\nA:5"),
        ("7 / 2", "S:7/2=3\nA:3"),  # floor division, as reasoning-gym
        ("-7 / 2", "S:-7/2=-4\nA:-4"),
        ("((1+2))*(3-5)", "S:1+2=3;3-5=-2;3*-2=-6\nA:-6"),
        ("4-1-7=", "S:4-1=3;3-7=-4\nA:-4"),
        ("42", "A:42"),
    ],
)
def test_worked_solution_format(expression, expected):
    assert worked_solution(expression) == expected
    assert evaluate(expression) == int(expected.rsplit("A:", 1)[1])


def test_solve_steps_and_compact_expression():
    assert solve_steps("4 - 1 - 7") == ["4-1=3", "3-7=-4"]
    assert compact_expression("4 - 1 - 7") == "4-1-7="
    assert compact_expression("( 56 + -33 ) - 84") == "(56+-33)-84="
    assert compact_expression("1 + 5 =") == "1+5="


@pytest.mark.parametrize("bad", ["", "4 +", "( 1 + 2", "1 + 2 )", "1.5 + 2", "x + 1", "5 / 0"])
def test_bad_expressions_raise_expression_error(bad):
    with pytest.raises(ExpressionError, match="expression"):
        worked_solution(bad)


@pytest.mark.parametrize("skill", ["chain_sum", "basic_arithmetic"])
def test_worked_solutions_score_full_marks_on_500_entries(skill):
    from reasoning_gym.factory import DATASETS, create_curriculum

    dataset_cls, _ = DATASETS[skill]
    rng = random.Random(skill)
    checked = 0
    for level in range(5):
        curriculum = create_curriculum(skill)
        curriculum.set_global_level(level)
        extra = {"whitespace": rng.choice(["single", "no_space", "random"])}
        config = curriculum.generate_configuration(
            {"seed": rng.randrange(2**31), "size": 100, **(extra if skill != "chain_sum" else {})}
        )
        dataset = dataset_cls(config)
        for entry in dataset:
            answer = worked_solution(entry["metadata"]["expression"]).rsplit("A:", 1)[1]
            assert dataset.score_answer(answer, entry) == 1.0, entry
            checked += 1
    assert checked == 500


# -- reasoning-gym specifics -----------------------------------------------------------------


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(UnknownNameError, match="chain_sum") as info:
        ReasoningGymDomain(["chain_summ"])
    assert info.value.kind == "reasoning-gym dataset"


def test_default_levels_follow_the_global_curriculum_levels():
    domain = ReasoningGymDomain(["chain_sum", "basic_arithmetic"])
    assert domain.levels("chain_sum") == [0, 1, 2, 3, 4]  # capped at 5
    assert domain.levels("basic_arithmetic") == [0, 1, 2, 3, 4]
    assert domain.level_spec("basic_arithmetic")[4] == {"num_terms": 4, "num_digits": 3}
    digits = [
        max(
            p.metadata["entry"]["metadata"]["num_digits"]
            for p in domain.generate(rng, 50, "chain_sum", lv)
        )
        for lv, rng in ((0, random.Random(0)), (4, random.Random(0)))
    ]
    assert digits[0] == 1 and digits[1] > 1


def test_custom_levels_with_upper_bound_are_exact():
    domain = ReasoningGymDomain(
        ["chain_sum"], {"chain_sum": MEASURED_CHAIN_SUM_LEVELS}, range_mode="upper_bound"
    )
    expect = [(2, 1), (2, 2), (2, 3), (3, 2), (3, 3)]
    for level, (terms, digits) in enumerate(expect):
        for p in domain.generate(random.Random(level), 20, "chain_sum", level):
            meta = p.metadata["entry"]["metadata"]
            assert (meta["num_terms"], meta["num_digits"]) == (terms, digits)


@pytest.mark.parametrize(
    "levels, match",
    [
        ({"chain_sum": [{"num_termz": 0}]}, "num_terms"),
        ({"chain_sum": [{"num_terms": 99}]}, "out of range"),
        ({"chain_sum": []}, "empty"),
        ({"leg_counting": [{}]}, "not among skills"),
    ],
)
def test_bad_level_specs_are_config_errors(levels, match):
    with pytest.raises(ConfigError, match=match):
        ReasoningGymDomain(["chain_sum"], levels)


def test_out_of_range_level_and_unknown_skill_in_generate():
    domain = ReasoningGymDomain(["chain_sum"])
    with pytest.raises(ConfigError, match="choose 0..4"):
        domain.generate(random.Random(0), 1, "chain_sum", 5)
    with pytest.raises(UnknownNameError):
        domain.generate(random.Random(0), 1, "basic_arithmetic", 0)


def test_compact_prompts_and_english_prompts():
    compact = ReasoningGymDomain(["chain_sum"], compact=True)
    english = ReasoningGymDomain(["chain_sum"])
    a = compact.generate(random.Random(4), 3, "chain_sum", 2)
    b = english.generate(random.Random(4), 3, "chain_sum", 2)
    for p, q in zip(a, b, strict=True):
        assert p.prompt.endswith("=") and " " not in p.prompt
        assert p.prompt == compact_expression(q.metadata["entry"]["metadata"]["expression"])
        assert q.prompt.startswith("State the final answer")
        assert p.answer == q.answer


def test_non_arithmetic_skill_is_solved_answer_only_unless_disabled():
    plain = ReasoningGymDomain(["leg_counting"], answer_only_solutions=False)
    problem = plain.generate(random.Random(0), 1, "leg_counting", 0)[0]
    assert plain.solve(problem) is None
    default = ReasoningGymDomain(["leg_counting"])
    assert default.solve(problem) == f"A:{problem.answer}"


def test_answer_tags_and_multiline_answers():
    domain = ReasoningGymDomain(["rotate_matrix"], answer_only_solutions=True)
    problem = domain.generate(random.Random(0), 1, "rotate_matrix", 0)[0]
    assert "\n" in problem.answer
    assert domain.verify(problem, f"Thinking...\nA:\n{problem.answer}\n").correct
    assert domain.verify(problem, f"<answer>{problem.answer}</answer>").correct
    assert domain.solve(problem) is not None
    assert not domain.verify(problem, "A: 1 2\n3 4").correct


def test_entries_that_do_not_survive_json_are_rebuilt():
    domain = ReasoningGymDomain(["rearc"], answer_only_solutions=True)
    problem = domain.generate(random.Random(0), 1, "rearc", 0)[0]
    assert problem.metadata["rebuild"] is True
    fresh = ReasoningGymDomain(["rearc"])  # another process, say
    restored = replace(problem, metadata=json.loads(json.dumps(problem.metadata)))
    assert fresh.verify(restored, f"A:{problem.answer}").correct
    assert not fresh.verify(restored, "A:0").correct


def test_a_scorer_that_raises_is_an_incorrect_verdict():
    domain = ReasoningGymDomain(["chain_sum"])
    problem = domain.generate(random.Random(0), 1, "chain_sum", 0)[0]
    broken = replace(problem, metadata={"entry": {"question": "q", "metadata": {}}})
    verdict = domain.verify(broken, f"A:{problem.answer}")
    assert not verdict.correct and "raised" in verdict.detail


def test_level_capacity_counts_small_levels():
    domain = ReasoningGymDomain(["chain_sum"])
    assert 180 <= domain.level_capacity("chain_sum", 0) <= 220  # 10 x 10 x {+,-}
    big = domain.level_capacity("chain_sum", 4)
    assert big is None or big > 10_000


# -- jsonl -----------------------------------------------------------------------------------


def test_jsonl_skills_levels_and_sampling(tmp_path):
    domain = JsonlDomain(write_jsonl(tmp_path / "qa.jsonl", JSONL_ROWS))
    assert domain.skills() == ["add", "geo"]
    assert domain.levels("add") == [0, 1]
    sample = domain.generate(random.Random(0), 2, "add", 0)
    assert sorted(p.prompt for p in sample) == ["2+2=", "3+4="]  # without replacement
    many = domain.generate(random.Random(0), 5, "add", 1)
    assert len(many) == 5 and {p.prompt for p in many} == {"12+30="}
    assert domain.solve(sample[0]).startswith("S:")
    assert domain.solve(domain.generate(random.Random(0), 1, "geo", 0)[0]) is None


def test_jsonl_normalises_answers(tmp_path):
    domain = JsonlDomain(write_jsonl(tmp_path / "qa.jsonl", JSONL_ROWS))
    add = domain.generate(random.Random(0), 1, "add", 1)[0]
    geo = next(p for p in domain.generate(random.Random(0), 2, "geo", 0) if p.answer == "Paris")
    assert domain.verify(add, "A: 42.0").correct
    assert domain.verify(add, "so...\n  42  ").correct
    assert not domain.verify(add, "A: 420").correct
    assert domain.verify(geo, "Answer:  paris ").correct
    assert not domain.verify(geo, "A: Lyon").correct


@pytest.mark.parametrize(
    "lines, match",
    [
        (['{"question": "q", "answer": "a"}', "{not json"], r"line 2 is not valid JSON"),
        (['{"question": "q"}'], r"line 1 has no 'answer'"),
        (['["q", "a"]'], r"line 1 is not a JSON object"),
        (['{"question": "q", "answer": "a", "level": -1}'], r"line 1: 'level'"),
        (["", "  "], r"holds no problems"),
    ],
)
def test_jsonl_bad_files_name_file_and_line(tmp_path, lines, match):
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ConfigError, match=match) as info:
        JsonlDomain(path)
    assert str(path) in str(info.value)


def test_jsonl_missing_file_and_unknown_arm(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        JsonlDomain(tmp_path / "nope.jsonl")
    domain = JsonlDomain(write_jsonl(tmp_path / "qa.jsonl", JSONL_ROWS))
    with pytest.raises(UnknownNameError):
        domain.generate(random.Random(0), 1, "mul", 0)
    with pytest.raises(ConfigError, match="choose one of levels"):
        domain.generate(random.Random(0), 1, "geo", 3)


# -- registry --------------------------------------------------------------------------------


def test_build_domain_by_name(tmp_path):
    assert {"jsonl", "reasoning_gym"} <= set(known_domains())
    rg = build_domain("reasoning_gym", skills=["chain_sum"], compact=True)
    assert isinstance(rg, ReasoningGymDomain) and rg.compact
    path = write_jsonl(tmp_path / "qa.jsonl", JSONL_ROWS)
    assert isinstance(build_domain("jsonl", path=path), JsonlDomain)
    with pytest.raises(UnknownNameError, match="reasoning_gym"):
        build_domain("reasoning-gym")
    with pytest.raises(ConfigError, match="bad options"):
        build_domain("jsonl", file=path)


@pytest.fixture
def restore_domains():
    """The domain registry as it was before the test (a registration lasts for good)."""
    before = dict(domain_registry.DOMAINS)
    yield domain_registry.DOMAINS
    domain_registry.DOMAINS.clear()
    domain_registry.DOMAINS.update(before)


def test_register_a_custom_domain(restore_domains):
    assert isinstance(restore_domains, Registry) and domain_registry._REGISTRY is restore_domains
    register_domain("parity", ParityDomain)
    assert isinstance(build_domain("parity"), ParityDomain)
    with pytest.raises(ConfigError, match="already registered"):
        register_domain("parity", ParityDomain)
    register_domain("broken", lambda: object())
    with pytest.raises(ConfigError, match="lacks the Domain methods"):
        build_domain("broken")


# -- failure-driven refinement -----------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 2, 4])
def test_variants_keep_the_arm_and_shape_and_verify(level):
    from pedagogy.domains.base import problem_variants

    domain = ReasoningGymDomain(["chain_sum"], compact=True)
    (parent,) = domain.generate(random.Random(11), 1, "chain_sum", level)
    variants = problem_variants(domain, parent, random.Random(5), 4)
    assert variants and len(variants) <= 4
    shape = re.sub(r"\d", "9", parent.prompt)
    for v in variants:
        assert (v.skill, v.level, v.arm) == (parent.skill, parent.level, parent.arm)
        assert v.parent_id == parent.id and v.source == "teacher-refined"
        assert v.prompt != parent.prompt and re.sub(r"\d", "9", v.prompt) == shape
        assert domain.verify(v, domain.solve(v)).correct  # the recomputed answer is right
        assert domain.verify(v, f"A:{v.answer}").correct
        assert not domain.verify(v, f"A:{int(v.answer) + 1}").correct
    assert len({v.id for v in variants}) == len(variants)
    again = problem_variants(domain, parent, random.Random(5), 4)
    assert [v.prompt for v in again] == [v.prompt for v in variants]


def test_variants_in_english_prompts_replace_the_expression():
    from pedagogy.domains.base import problem_variants

    domain = ReasoningGymDomain(["chain_sum"])
    (parent,) = domain.generate(random.Random(2), 1, "chain_sum", 1)
    (v,) = problem_variants(domain, parent, random.Random(0), 1)
    assert v.prompt.startswith("State the final answer") and v.prompt != parent.prompt
    assert v.metadata["entry"]["metadata"]["expression"] in v.prompt


def test_domains_that_cannot_vary_a_problem_give_none(tmp_path):
    from pedagogy.domains.base import problem_variants

    plain = ReasoningGymDomain(["leg_counting"])
    (p,) = plain.generate(random.Random(0), 1, "leg_counting", 0)
    assert problem_variants(plain, p, random.Random(0), 3) == []
    jsonl = DOMAINS["jsonl"](tmp_path)
    (q,) = jsonl.generate(random.Random(0), 1, *arms(jsonl)[0])
    assert problem_variants(jsonl, q, random.Random(0), 3) == []


# -- optional capabilities: every registered domain keeps the contract of what it offers ----------

REGISTERED_OPTIONS = {
    "reasoning_gym": lambda tmp: {"skills": ["chain_sum"], "compact": True},
    "jsonl": lambda tmp: {"path": write_jsonl(tmp / "qa.jsonl", JSONL_ROWS)},
    "world": lambda tmp: {"seed": 0, "n_entities": 40},
}
"""Options a registered domain needs to be built here (none: it builds without)."""


@pytest.mark.parametrize("name", known_domains())
def test_a_registered_domain_keeps_the_contract_of_each_capability_it_offers(name, tmp_path):
    from pedagogy.config import load_config
    from pedagogy.domains import base
    from pedagogy.part_names import tool_serving_problems
    from pedagogy.tools.registry import build_tool, known_tools

    options = REGISTERED_OPTIONS.get(name, lambda tmp: {})(tmp_path)
    domain = build_domain(name, **options)
    assert isinstance(domain, Domain)
    for method, protocol in base.CAPABILITIES.items():
        assert base.offers(domain, protocol) == callable(getattr(domain, method, None)), method
    skill, level = arms(domain)[0]
    (problem,) = domain.generate(random.Random(0), 1, skill, level)
    if base.offers(domain, base.VariesProblems):
        variants = base.problem_variants(domain, problem, random.Random(1), 2)
        assert all(v.arm == problem.arm and v.parent_id == problem.id for v in variants)
        assert all(v.prompt != problem.prompt for v in variants)
    if base.offers(domain, base.ReadsProblems):
        read = base.written_problem(domain, problem.prompt, problem)
        assert read is not None and (read.arm, read.answer) == (problem.arm, problem.answer)
        assert base.written_problem(domain, "not a problem at all", problem) is None
    if base.offers(domain, base.TellsParameters):
        parameters = base.problem_parameters(domain, problem)
        assert parameters is None or json.loads(json.dumps(parameters)) == parameters
    if base.offers(domain, base.SizesLevels):
        size = domain.level_capacity(skill, level)
        assert size is None or (isinstance(size, int) and size >= 1)
    # The tools it names are registered, and it serves each: built with its options, and a config
    # that asks for them by name loads.
    tools, supplied = base.domain_tools(domain), base.domain_tool_options(domain)
    assert set(tools) <= set(known_tools()) and set(supplied) <= set(tools)
    for tool in tools:
        build_tool(tool, **supplied.get(tool, {}))
    config = load_config(None).with_overrides(
        {"domain": {"name": name, "options": options}, "agent": {"enabled": True, "tools": tools}}
    )
    assert tool_serving_problems(config) == []


def test_a_domain_without_the_optional_methods_offers_none_and_gets_neutral_answers():
    from pedagogy.domains import base

    domain = ParityDomain()
    (problem,) = domain.generate(random.Random(0), 1, "parity", 0)
    assert not any(base.offers(domain, p) for p in base.CAPABILITIES.values())
    assert base.problem_variants(domain, problem, random.Random(0), 2) == []
    assert base.written_problem(domain, problem.prompt, problem) is None
    assert base.problem_parameters(domain, problem) is None and not base.has_parameters(domain)
    assert base.domain_tools(domain) == [] and base.domain_tool_options(domain) == {}
    domain.variants = None  # an attribute that cannot be called is no capability
    assert not base.offers(domain, base.VariesProblems)
    assert base.problem_variants(domain, problem, random.Random(0), 2) == []
