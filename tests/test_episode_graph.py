import asyncio
import random

from pedagogy.agents.roles import Student, Teacher, Verifier
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.domains.base import Problem, Verdict, extract_final_answer
from pedagogy.graphs.episode import Agents, build_episode_graph


class AddDomain:
    """a+b, solvable: enough of a domain for graph tests."""

    name = "add"

    def skills(self):
        return ["add"]

    def levels(self, skill):
        return [0]

    def generate(self, rng, n, skill, level):
        out = []
        for _ in range(n):
            a, b = rng.randrange(10), rng.randrange(10)
            out.append(Problem("add", "add", 0, f"{a}+{b}=", str(a + b)))
        return out

    def parse_answer(self, response):
        return extract_final_answer(response)

    def verify(self, problem, response):
        ans = self.parse_answer(response)
        ok = ans is not None and ans.strip() == problem.answer
        return Verdict(ok, float(ok), ans)

    def solve(self, problem):
        return f"S:{problem.prompt}{problem.answer}\nA:{problem.answer}"


def student_that_learns_from_explanations(request):
    # wrong on first sight, right once an explanation is in context
    p = request.problem
    return f"A:{p.answer}" if request.purpose == "reattempt" else "A:-1"


def _agents(budget=None, reattempt=True):
    domain = AddDomain()
    student = ScriptedBackend(student_that_learns_from_explanations)
    teacher = ScriptedBackend.from_domain(domain)
    return (
        domain,
        Agents(Student(student), Teacher(teacher, budget=budget), Verifier(domain), reattempt),
        student,
        teacher,
    )


def _input(p, i=0):
    return {"episode_id": f"e{i}", "run_id": "r", "round": 1, "index": i, "seed": i, "problem": p}


async def test_wrong_attempt_is_explained_and_reattempted():
    domain, agents, student, teacher = _agents()
    p = domain.generate(random.Random(0), 1, "add", 0)[0]
    rec = (await build_episode_graph(agents).ainvoke(_input(p)))["record"]
    assert [t.agent for t in rec.turns] == ["student", "teacher", "student"]
    assert [t.seq for t in rec.turns] == [0, 1, 2]
    assert rec.outcome == "correct_after_explanation" and rec.explained
    assert not rec.correct_first and rec.correct_final
    assert len(rec.verdicts) == 2 and len(rec.explanations) == 1
    assert (
        teacher.calls[0].purpose == "explain"
        and p.prompt in teacher.calls[0].messages[0]["content"]
    )
    assert rec.turns[1].response == domain.solve(p)


async def test_correct_attempt_needs_no_teacher():
    domain = AddDomain()
    student = ScriptedBackend(lambda r: f"S:x\nA:{r.problem.answer}")
    teacher = ScriptedBackend.from_domain(domain)
    agents = Agents(Student(student), Teacher(teacher), Verifier(domain))
    p = domain.generate(random.Random(1), 1, "add", 0)[0]
    rec = (await build_episode_graph(agents).ainvoke(_input(p)))["record"]
    assert rec.outcome == "correct_first" and not teacher.calls and len(rec.turns) == 1


async def test_budget_is_spent_exactly_under_concurrency():
    domain, agents, student, teacher = _agents(budget=5)
    graph = build_episode_graph(agents)
    problems = domain.generate(random.Random(2), 20, "add", 0)
    recs = await asyncio.gather(*[graph.ainvoke(_input(p, i)) for i, p in enumerate(problems)])
    explained = [r["record"].explained for r in recs]
    assert sum(explained) == 5 and len(teacher.calls) == 5 and agents.teacher.spent == 5
    assert sum(r["record"].outcome == "wrong" for r in recs) == 15


async def test_no_reattempt_option():
    domain, agents, student, teacher = _agents(reattempt=False)
    p = domain.generate(random.Random(3), 1, "add", 0)[0]
    rec = (await build_episode_graph(agents).ainvoke(_input(p)))["record"]
    assert [t.agent for t in rec.turns] == ["student", "teacher"] and rec.outcome == "wrong"
