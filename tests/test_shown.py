"""What the student saw is what is stored; the budget is charged as `decide` reserved it.

Real parts: the tiny student (a randomly initialised character-level Llama, so its first
attempts are wrong), the scripted teacher, a real SQLite file, and for a teacher that follows
instructions the litellm backend against the local OpenAI-compatible server.
"""

from __future__ import annotations

import random
import warnings
from functools import partial

import pytest
from langgraph.graph import END, START, StateGraph

from pedagogy.agents.explanations import AdaptiveStyle, ConciseStyle, DetailedStyle
from pedagogy.agents.roles import Student, Teacher, Verifier
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.domains.base import Problem, Verdict, extract_final_answer
from pedagogy.errors import ConfigError
from pedagogy.graphs import episode as E
from pedagogy.memory import RunRecord, open_store


class Doubling:
    """2*x for two-digit x, with worked solutions: wrong for an untrained tiny student."""

    name = "doubling_shown"

    def skills(self):
        return ["double"]

    def levels(self, skill):
        return [0]

    def generate(self, rng, n, skill, level):
        xs = [rng.randrange(10, 100) for _ in range(n)]
        return [Problem(self.name, skill, level, f"2*{x}=", str(2 * x)) for x in xs]

    def parse_answer(self, response):
        return extract_final_answer(response)

    def verify(self, problem, response):
        answer = self.parse_answer(response)
        return Verdict(answer == problem.answer, float(answer == problem.answer), answer)

    def solve(self, problem):
        x = problem.prompt[2:-1]
        return f"S:{x}+{x}={problem.answer}\nA:{problem.answer}"


class Hint:
    """A custom style: a one-line hint instead of the solution."""

    name = "hint"

    def render(self, problem, solution, attempt=None):
        return f"Hint: add {problem.prompt[2:-1]} to itself."

    def instruction(self):
        return "Give a one-line hint that starts with 'Hint:', not the answer."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.training.tiny import build_tiny_student

    path = build_tiny_student(tmp_path_factory.mktemp("tiny") / "v0", seed=0)
    return TransformersBackend(str(path), version_id="v0")


def _agents(student, budget=None, style=None):
    domain = Doubling()
    teacher = Teacher(ScriptedBackend.from_domain(domain), budget=budget)
    if style is not None:
        teacher.style_for = lambda problem: style
    return domain, E.Agents(Student(student, max_tokens=16), teacher, Verifier(domain))


async def _run(graph, domain, n, seed=0):
    problems = domain.generate(random.Random(seed), n, "double", 0)
    out = []
    for i, p in enumerate(problems):
        state = {"episode_id": f"e{seed}-{i}", "run_id": "r", "round": 1, "index": i}
        state.update({"seed": i, "problem": p})
        out.append((await graph.ainvoke(state))["record"])
    return problems, out


def _stored(tmp_path, problems, records):
    """The records written to a real SQLite file and read back."""
    with open_store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        store.create_run(RunRecord("r", "shown", {}, 0))
        store.add_problems(problems)
        store.record_episodes(records)
        return store.episodes("r", with_turns=True)


def _shown_in_reattempts(episode, prompt):
    """The explanation in front of the prompt of each re-attempt, in order."""
    contents = [
        t.request["messages"][0]["content"]
        for t in episode.turns
        if t.agent == "student" and t.request.get("purpose") == "reattempt"
    ]
    assert all(c.endswith(f"\n{prompt}") for c in contents)
    return [c[: -len(prompt) - 1] for c in contents]


@pytest.mark.parametrize(
    "style, name",
    [
        (None, "worked"),
        (Hint(), "hint"),
        (ConciseStyle(), "concise"),
        (DetailedStyle(), "detailed"),
        (AdaptiveStyle(mastery=0.9), "concise"),
    ],
)
async def test_the_stored_explanation_is_what_the_student_was_shown(tiny, tmp_path, style, name):
    domain, agents = _agents(tiny, style=style)
    problems, records = await _run(E.build_episode_graph(agents), domain, 4)
    stored = _stored(tmp_path, problems, records)
    by_id = {p.id: p for p in problems}
    explained = [e for e in stored if e.explained]
    assert explained, "the untrained student got every problem right"
    for episode in explained:
        problem = by_id[episode.problem_id]
        (x,) = episode.explanations
        teacher = next(t for t in episode.turns if t.id == x.turn_id)
        assert x.style == name
        assert _shown_in_reattempts(episode, problem.prompt) == [x.text]
        assert teacher.response == domain.solve(problem)  # what the teacher wrote
        assert x.budget_spent == 1.0
        if name == "hint":
            assert x.text == f"Hint: add {problem.prompt[2:-1]} to itself."
        if name == "worked":
            assert x.text == teacher.response


def _hint_or_solution(body):
    content = body["messages"][-1]["content"]
    return "Hint: double it." if Hint().instruction() in content else "S:x\nA:0"


@pytest.mark.parametrize("teacher_kind", ["scripted", "litellm"])
async def test_a_custom_style_works_with_every_teacher(teacher_kind):
    from pedagogy.backends.litellm import LiteLLMBackend
    from pedagogy.testing import OpenAICompatServer

    domain = Doubling()
    problem = domain.generate(random.Random(1), 1, "double", 0)[0]
    with OpenAICompatServer(_hint_or_solution) as server:
        backend = (
            ScriptedBackend.from_domain(domain)
            if teacher_kind == "scripted"
            else LiteLLMBackend("openai/local", api_base=server.base_url)
        )
        teacher = Teacher(backend)
        turn = await teacher.explain(problem, "A:7", 1, Hint())
    prompt = turn.request["messages"][0]["content"]
    assert Hint().instruction() in prompt  # asked of every teacher
    if teacher_kind == "scripted":  # writes the solution whatever it is asked: rendered
        assert teacher.renders_styles
        assert turn.response == domain.solve(problem)
        assert turn.detail["shown"] == Hint().render(problem, turn.response)
    else:  # follows the instruction: shown as written
        assert not teacher.renders_styles
        assert turn.response == turn.detail["shown"] == "Hint: double it."


def two_tier(agents, hint_cost=0.5):
    """A hint first, then (whatever came of it) the worked solution, on one reservation."""
    g = StateGraph(E.EpisodeState)
    g.add_node("attempt", partial(E.attempt, agents=agents))
    g.add_node("decide", partial(E.decide, agents=agents))
    g.add_node("hint", partial(E.explain, agents=agents, style=Hint(), cost=hint_cost))
    g.add_node("retry", partial(E.reattempt, agents=agents))
    g.add_node("full", partial(E.explain, agents=agents))
    g.add_node("reattempt", partial(E.reattempt, agents=agents))
    g.add_node("record", E.record)
    g.add_edge(START, "attempt")
    g.add_edge("attempt", "decide")
    g.add_conditional_edges("decide", lambda s: "hint" if s["intervene"] else "record")
    g.add_edge("hint", "retry")
    g.add_edge("retry", "full")
    g.add_edge("full", "reattempt")
    g.add_edge("reattempt", "record")
    g.add_edge("record", END)
    return g.compile()


@pytest.mark.parametrize("hint_cost, charges", [(0.5, [0.5, 0.5]), (None, [1.0, 0.0])])
async def test_a_two_tier_graph_is_charged_what_decide_reserved(tiny, tmp_path, hint_cost, charges):
    domain, agents = _agents(tiny, budget=3)
    problems, records = await _run(two_tier(agents, hint_cost), domain, 6)
    stored = _stored(tmp_path, problems, records)
    reserved = agents.teacher.spent
    assert reserved == 3  # six wrong first attempts, a budget of three
    assert sum(x.budget_spent for e in stored for x in e.explanations) == reserved
    by_id = {p.id: p for p in problems}
    for episode in stored:
        if not episode.explained:
            assert episode.explanations == []
            continue
        assert [x.budget_spent for x in episode.explanations] == charges
        assert [x.style for x in episode.explanations] == ["hint", "worked"]
        shown = _shown_in_reattempts(episode, by_id[episode.problem_id].prompt)
        assert shown == [x.text for x in episode.explanations]


async def test_a_charge_beyond_the_reservation_is_refused(tiny):
    domain, agents = _agents(tiny)
    problem = domain.generate(random.Random(2), 1, "double", 0)[0]
    state = {"episode_id": "e", "run_id": "r", "round": 1, "index": 0, "seed": 0}
    state.update({"problem": problem})
    state.update(await E.attempt(state, agents))
    # No decide ran: nothing was reserved, so nothing is charged.
    update = await E.explain(state, agents)
    assert [x.budget_spent for x in update["explanations"]] == [0.0]
    state.update(await E.decide(state, agents))
    assert state["reserved"] == 1.0
    with pytest.raises(ConfigError, match=r"cost 1\.5 is more than the 1 left.*add up to"):
        await E.explain(state, agents, cost=1.5)
    with pytest.raises(ConfigError, match="cost must be a number >= 0"):
        await E.explain(state, agents, cost=-1)


@pytest.mark.slow
async def test_a_two_tier_graph_in_a_run(tmp_path, restore_registries):
    """Through the loop: the round's broker decides, the store keeps what was shown."""
    from pedagogy.config import load_config
    from pedagogy.domains import register_domain
    from pedagogy.runner import run_loop

    register_domain("doubling_shown", lambda **options: Doubling(), replace=True)
    config = load_config(None).with_overrides(
        {
            "workdir": str(tmp_path / "work"),
            "db": str(tmp_path / "work" / "p.db"),
            "rounds": 1,
            "domain": {"name": "doubling_shown", "options": {}},
            "student": {"options": {"tiny": {}}},
            "episodes": {"per_round": 12, "explain_budget": 5},
            "training": {"max_steps": 2, "batch_size": 8},
            "evaluation": {"heldout_per_arm": 4},
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = await run_loop(config, episode_graph=two_tier)
    assert result.status == "completed"
    with open_store(str(tmp_path / "work" / "p.db"), create=False) as store:
        episodes = store.episodes(result.run_id, with_turns=True)
        chosen = sum(d.chosen for d in store.decisions(result.run_id, 1, "intervention"))
        problems = store.get_problems([e.problem_id for e in episodes])
    assert chosen == 5
    assert sum(x.budget_spent for e in episodes for x in e.explanations) == chosen
    for episode in (e for e in episodes if e.explained):
        assert [x.budget_spent for x in episode.explanations] == [0.5, 0.5]
        shown = _shown_in_reattempts(episode, problems[episode.problem_id].prompt)
        assert shown == [x.text for x in episode.explanations]
