"""Every reasoning-gym dataset is teachable offline: answer-only solutions, labelled turns, the
scripted teacher's capability checked before any model is built, a context that fits the prompts."""

import json
import random

import pytest
from typer.testing import CliRunner

from pedagogy.agents.roles import Teacher
from pedagogy.backends.base import ChatRequest
from pedagogy.backends.scripted import ScriptedBackend, solution_detail
from pedagogy.cli import app
from pedagogy.config import load_config
from pedagogy.domains.reasoning_gym import ReasoningGymDomain
from pedagogy.errors import BackendError, ConfigError
from pedagogy.memory.store import open_store
from pedagogy.runner import (
    _check_teacher_explains,
    _domain_context,
    _sample_arms,
    _warn_cut_answers,
    build_domain_from,
)

runner = CliRunner()


def _problem(domain, skill, level=0, seed=0):
    return domain.generate(random.Random(seed), 1, skill, level)[0]


def _config(quick_config, skill, levels=None, **overrides):
    """The quick config on one reasoning-gym dataset (its English prompts)."""
    options = {"skills": [skill], "compact": False, "levels": {skill: levels} if levels else None}
    options.update(overrides.pop("options", {}))
    return quick_config(domain={"name": "reasoning_gym", "options": options}, **overrides)


def _startup(path):
    config = load_config(path)
    domain = build_domain_from(config)
    arms = [f"{s}@{lv}" for s in domain.skills() for lv in domain.levels(s)]
    return config, domain, _sample_arms(domain, arms)


# -- solutions and their label ---------------------------------------------------------------


@pytest.mark.parametrize("skill", ["letter_counting", "spell_backward", "count_bits"])
def test_datasets_without_a_solver_are_solved_answer_only_by_default(skill):
    domain = ReasoningGymDomain([skill])
    problem = _problem(domain, skill)
    solution = domain.solve(problem)
    assert solution == f"A:{problem.answer}" and domain.verify(problem, solution).correct
    assert solution_detail(problem, solution) == {"solution": "answer_only"}
    assert ReasoningGymDomain([skill], answer_only_solutions=False).solve(problem) is None


def test_arithmetic_keeps_its_worked_solutions_unlabelled():
    domain = ReasoningGymDomain(["chain_sum"], compact=True)
    problem = _problem(domain, "chain_sum", 1)
    solution = domain.solve(problem)
    assert solution.startswith("S:") and solution_detail(problem, solution) == {}


async def test_the_scripted_teachers_turn_says_it_gave_the_answer_only():
    domain = ReasoningGymDomain(["letter_counting"])
    problem = _problem(domain, "letter_counting")
    turn = await Teacher(ScriptedBackend.from_domain(domain)).explain(problem, "A:0", seq=1)
    assert turn.response == f"A:{problem.answer}" and turn.error is None
    assert turn.detail["solution"] == "answer_only" and turn.detail["shown"] == turn.response
    worked = ReasoningGymDomain(["chain_sum"], compact=True)
    turn = await Teacher(ScriptedBackend.from_domain(worked)).explain(
        _problem(worked, "chain_sum"), "A:0", seq=1
    )
    assert turn.response.startswith("S:") and "solution" not in turn.detail


async def test_a_problem_without_a_solution_fails_its_turn_not_the_run():
    domain = ReasoningGymDomain(["letter_counting"], answer_only_solutions=False)
    problem = _problem(domain, "letter_counting")
    request = ChatRequest([{"role": "user", "content": "?"}], problem=problem, purpose="explain")
    (completion,) = await ScriptedBackend.from_domain(domain).generate([request])
    assert completion.text == "" and "no solution for problem" in completion.error
    with pytest.raises(BackendError, match="ChatRequest.problem"):
        await ScriptedBackend.from_domain(domain).generate([ChatRequest([])])


# -- startup checks --------------------------------------------------------------------------


def test_the_check_names_the_fix(quick_config):
    off = _config(quick_config, "letter_counting", options={"answer_only_solutions": False})
    with pytest.raises(ConfigError, match="answer_only_solutions: true"):
        _check_teacher_explains(*_startup(off))
    no_answer = _config(quick_config, "graph_color")
    with pytest.raises(ConfigError, match="no reference answer for graph_color@0.*LLM teacher"):
        _check_teacher_explains(*_startup(no_answer))
    llm = _config(
        quick_config, "graph_color", teacher={"kind": "litellm", "model": "openai/x"}
    )  # an LLM teacher explains anything: nothing to check
    _check_teacher_explains(*_startup(llm))


def test_an_unteachable_domain_fails_in_one_line_before_any_model_is_built(quick_config, tmp_path):
    path = _config(
        quick_config,
        "letter_counting",
        [{"words": 0}],
        options={"answer_only_solutions": False},
    )
    result = runner.invoke(app, ["run", "--config", str(path), "--quiet"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "cannot explain letter_counting@0" in lines[0] and "answer_only_solutions" in lines[0]
    assert not list((tmp_path / "work").glob("runs/*/models/*"))
    db = tmp_path / "work" / "pedagogy.db"
    assert not db.exists() or open_store(str(db)).list_runs() == []


def test_the_context_fits_the_longest_prompt_and_solution(quick_config):
    config, domain, samples = _startup(_config(quick_config, "leg_counting"))
    need = _domain_context(config, samples)
    longest = max(
        len(s) + 1 + len(p.prompt) + config.student.max_tokens
        for pairs in samples.values()
        for p, s in pairs
    )
    assert need >= longest > 256  # the explanation, the prompt and the answer, re-attempted
    # the default run's arithmetic still fits the default 256 positions
    default = load_config(None)
    arms = [f"chain_sum@{lv}" for lv in range(5)]
    assert _domain_context(default, _sample_arms(build_domain_from(default), arms)) <= 256


def test_solutions_longer_than_the_students_max_tokens_are_warned(quick_config):
    path = _config(quick_config, "word_sorting", [{"num_words": 2, "word_length": 1}])
    config, _, samples = _startup(path)
    with pytest.warns(UserWarning, match=r"student.max_tokens is 64.*word_sorting@0"):
        _warn_cut_answers(config, samples)


# -- a whole run -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_non_arithmetic_dataset_runs_offline_with_labelled_explanations(quick_config, tmp_path):
    path = _config(
        quick_config,
        "leg_counting",
        [{"num_animals": 0, "num_instances": 0}, {"num_animals": 3, "num_instances": 3}],
        rounds=1,
    )
    result = runner.invoke(app, ["run", "--config", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "maximum length" not in result.output  # transformers' context warning
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    (run,) = store.list_runs()
    assert run.status == "completed"
    teacher = [t for e in store.episodes(run.id, with_turns=True) for t in e.turns]
    teacher = [t for t in teacher if t.agent == "teacher"]
    assert teacher and all(t.detail["solution"] == "answer_only" for t in teacher)
    (tiny,) = (tmp_path / "work").glob("runs/*/models/student-v0/pedagogy_tiny.json")
    assert json.loads(tiny.read_text())["max_position"] > 256


@pytest.mark.slow
def test_an_episode_failure_is_one_line_without_background_tracebacks(
    quick_config, monkeypatch, caplog
):
    """A teacher that fails mid-round ends the run with one error line: the other episodes in
    flight are cancelled and collected, not left to print "Task exception was never retrieved"."""
    from pedagogy.backends.registry import BACKENDS

    def broken(cfg, domain):
        calls = []

        def explain(request):
            calls.append(request)
            if len(calls) > 2:
                raise BackendError("the teacher broke")
            return domain.solve(request.problem)

        return ScriptedBackend(explain, model="broken")

    monkeypatch.setitem(BACKENDS, "broken", broken)
    path = quick_config(teacher={"kind": "broken"}, rounds=1)
    result = runner.invoke(app, ["run", "--config", str(path), "--quiet"])
    assert result.exit_code == 2 and result.output.strip() == "error: the teacher broke"
    # abandoned episodes show up as "unhandled exception during asyncio.run() shutdown"
    assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]
