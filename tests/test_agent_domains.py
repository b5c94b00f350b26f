"""The tool-using domains: `world` (multi-hop questions over a retrieval corpus) and `code`
(functions checked by unit tests in the sandbox)."""

from __future__ import annotations

import ast
import asyncio
import json
import random
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from pedagogy.domains import Domain, Problem, build_domain
from pedagogy.domains.code import CodeDomain, extract_code
from pedagogy.domains.world import RELATIONS, WorldDomain, english_words
from pedagogy.errors import ConfigError, UnknownNameError

GARBAGE = ["", "   \n ", "A:", "\x00\x01\ufffd", "A: ]]{{(" * 50, "🙂"]


@pytest.fixture(scope="module")
def world() -> WorldDomain:
    return WorldDomain(seed=0, n_entities=120)


@pytest.fixture(scope="module")
def code() -> CodeDomain:
    return CodeDomain()


def batch(domain, seed: int, n: int, level: int) -> list[Problem]:
    return domain.generate(random.Random(seed), n, domain.skills()[0], level)


# -- world: the world itself -------------------------------------------------------------------


def test_a_seed_gives_the_same_world_and_another_seed_another(world):
    assert WorldDomain(seed=0, n_entities=120).corpus() == world.corpus()
    other = WorldDomain(seed=1, n_entities=120)
    assert not set(other.world.entities) & set(world.world.entities)


@pytest.mark.parametrize("seed, size", [(0, 120), (5, 60), (9, 200)])
def test_names_are_unique_made_up_words(seed, size):
    domain = WorldDomain(seed=seed, n_entities=size)
    entities = domain.world.entities
    assert len(entities) == size
    assert {e.kind for e in entities.values()} == {"person", "city", "company", "river", "country"}
    shared = {"river", "corp", "labs", "group", "holdings", "systems"}
    tokens = [t for name in entities for t in name.lower().split() if t not in shared]
    assert len(tokens) == len(set(tokens)), "a name token is shared by two entities"
    words = english_words()
    assert len(words) > 100_000  # the real list, not the fallback
    assert not [t for t in tokens if t in words]


def test_corpus_has_one_document_per_fact(world, tmp_path):
    corpus = world.corpus()
    ids = [doc["id"] for doc in corpus]
    assert len(ids) == len(set(ids)) == len(world.world.facts)
    assert len({doc["text"] for doc in corpus}) == len(corpus)
    keys = [(f.subject, f.relation) for f in world.world.facts]
    assert len(keys) == len(set(keys))
    assert world.tools() == ["retrieve"]
    assert world.tool_options() == {"retrieve": {"documents": corpus}}
    json.dumps(world.tool_options())
    path = world.write_corpus(tmp_path / "corpus.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == corpus


# -- world: problems ---------------------------------------------------------------------------


def test_world_levels_and_deterministic_batches(world):
    assert isinstance(world, Domain) and world.skills() == ["facts"]
    assert world.levels("facts") == [0, 1, 2]
    for level in world.levels("facts"):
        first, again = batch(world, 7, 20, level), batch(world, 7, 20, level)
        assert [p.id for p in first] == [p.id for p in again]
        assert [p.id for p in first] != [p.id for p in batch(world, 8, 20, level)]
        for p in first:
            assert (p.domain, p.skill, p.level) == ("world", "facts", level)
            assert len(p.metadata["relations"]) == level + 1 == len(p.metadata["facts"])
            assert p.prompt.startswith("Q: ") and len(p.prompt) < 120
            json.dumps(p.metadata)


def test_questions_never_contain_their_answer_and_each_hop_is_one_fact(world):
    texts = {doc["id"]: doc["text"] for doc in world.corpus()}
    for level in world.levels("facts"):
        for p in batch(world, 1, 200, level):
            assert not re.search(rf"\b{re.escape(p.answer)}\b", p.prompt, re.IGNORECASE), p
            facts = p.metadata["facts"]
            assert len(set(facts)) == len(facts)
            assert p.answer in texts[facts[-1]]
            # The chain visits distinct entities: no hop's answer is a name the question gives.
            path = [p.metadata["start"], *(world.world.fact(*f).value for f in _keys(world, p))]
            assert len(set(path)) == len(path)


def _keys(world: WorldDomain, problem: Problem) -> list[tuple[str, str]]:
    facts = world.world.walk(problem.metadata["start"], problem.metadata["relations"])
    return [(f.subject, f.relation) for f in facts]


def test_world_solutions_verify_and_wrong_answers_do_not(world):
    for level in world.levels("facts"):
        for p in batch(world, 3, 30, level):
            solution = world.solve(p)
            steps = solution.splitlines()
            assert len(steps) == level + 2 and steps[-1] == f"A:{p.answer}"
            assert steps[0].startswith(f"S:{p.metadata['start']} {p.metadata['relations'][0]} ")
            assert world.verify(p, solution).correct
            assert world.verify(p, f"T:looked it up\nA:  {p.answer.upper()}. ").correct
            wrong = world.verify(p, "A:Nowhere")
            assert not wrong.correct and wrong.score == 0.0 and "expected" in wrong.detail
            for response in GARBAGE:
                assert not world.verify(p, response).correct


def test_world_answers_normalise_articles_and_numbers(world):
    river = next(p for p in batch(world, 4, 200, 0) if p.answer.endswith("River"))
    assert world.verify(river, f"A:the {river.answer.lower()}").correct
    number = next(p for p in batch(world, 4, 200, 0) if p.answer.isdigit() and len(p.answer) > 4)
    assert world.verify(number, f"A:{int(number.answer):,}").correct


def test_stored_problems_verify_and_other_worlds_are_refused(world):
    p = batch(world, 11, 1, 2)[0]
    restored = Problem(**json.loads(json.dumps(p.__dict__)))
    assert restored.id == p.id and world.solve(restored) == world.solve(p)
    other = WorldDomain(seed=1, n_entities=60)
    assert other.solve(p) is None
    with pytest.raises(ConfigError, match="seed=1"):
        other.demonstrate(p)


def test_world_variants_keep_the_relations(world):
    p = batch(world, 2, 1, 1)[0]
    variants = world.variants(p, random.Random(0), 4)
    assert variants and all(v.metadata["relations"] == p.metadata["relations"] for v in variants)
    assert all(v.prompt != p.prompt and world.verify(v, world.solve(v)).correct for v in variants)


def test_world_bad_options_and_names():
    with pytest.raises(ConfigError, match="n_entities"):
        WorldDomain(n_entities=5)
    domain = build_domain("world", seed=3, n_entities=60)
    assert isinstance(domain, WorldDomain) and domain.seed == 3
    with pytest.raises(UnknownNameError):
        domain.generate(random.Random(0), 1, "maths", 0)
    with pytest.raises(ConfigError, match="level"):
        domain.generate(random.Random(0), 1, "facts", 3)


# -- world: retrieval --------------------------------------------------------------------------


def _searcher(corpus: list[dict[str, str]]):
    """Top-3 ids for a query: the `retrieve` tool when it exists, else bm25s directly with the
    same tokenisation (lower case, split on non-alphanumerics)."""
    try:
        from pedagogy.tools.registry import build_tool
    except ImportError:
        build_tool = None
    if build_tool is not None:
        tool = build_tool("retrieve", documents=corpus)

        def search(queries: list[str]) -> list[list[str]]:
            async def run() -> list:
                return [await tool.call({"query": q, "k": 3}) for q in queries]

            observations = asyncio.run(run())
            return [re.findall(r"^\[([^\]]+)\]", o.text, re.MULTILINE) for o in observations]

        return search
    import bm25s

    def tokens(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    index = bm25s.BM25()
    index.index([tokens(doc["text"]) for doc in corpus], show_progress=False)

    def search(queries: list[str]) -> list[list[str]]:
        found, _ = index.retrieve([tokens(q) for q in queries], k=3, show_progress=False)
        return [[corpus[i]["id"] for i in row] for row in found]

    return search


@pytest.mark.parametrize("seed, size", [(0, 120), (2, 200)])
def test_each_demonstrated_lookup_finds_its_fact_in_the_top_3(seed, size):
    domain = WorldDomain(seed=seed, n_entities=size)
    search = _searcher(domain.corpus())
    for level in domain.levels("facts"):
        queries, needed = [], []
        for p in batch(domain, level, 200, level):
            actions = domain.demonstrate(p)
            assert actions[-1] == {"answer": p.answer}
            lookups = actions[:-1]
            assert len(lookups) == level + 1
            assert all(a["tool"] == "retrieve" and a["thought"] for a in lookups)
            queries += [a["arguments"]["query"] for a in lookups]
            needed += p.metadata["facts"]
        found = search(queries)
        missed = [(q, f) for q, f, top in zip(queries, needed, found) if f not in top]
        assert not missed, f"level {level}: {len(missed)}/{len(queries)} missed, e.g. {missed[:3]}"


def test_every_relation_has_its_wordings():
    for name, relation in RELATIONS.items():
        assert "{s}" in relation.doc and "{o}" in relation.doc, name
        assert all("{s}" in t for t in (relation.ask, relation.phrase, relation.query)), name


# -- code: the problem set ---------------------------------------------------------------------


def test_bundled_code_problems(code):
    rows = code.rows()
    assert 40 <= len(rows) <= 60
    assert code.levels("functions") == [0, 1, 2]
    assert all(len(code._rows[level]) >= 12 for level in (0, 1, 2))
    assert len({r["task_id"] for r in rows}) == len({r["entry_point"] for r in rows}) == len(rows)
    assert all(len(r["prompt"]) <= 300 and ">>> " in r["prompt"] for r in rows)
    assert code.tools() == ["python"]


def test_code_generate_is_deterministic(code):
    assert isinstance(code, Domain)
    for level in code.levels("functions"):
        first, again = batch(code, 7, 6, level), batch(code, 7, 6, level)
        assert [p.id for p in first] == [p.id for p in again]
        assert all(p.level == level and p.domain == "code" for p in first)
        json.dumps([p.metadata for p in first])
    assert len(batch(code, 1, 40, 0)) == 40  # more than a level holds: drawn with replacement


def test_code_extraction_forms():
    body = "    return a + b"
    assert extract_code(f"T:easy\n```python\ndef add(a, b):\n{body}\n```\nDone.") == (
        f"def add(a, b):\n{body}"
    )
    assert extract_code(f"T:easy\nA:def add(a, b):\n{body}") == f"def add(a, b):\n{body}"
    assert extract_code(f"Here it is:\ndef add(a, b):\n{body}\n") == f"def add(a, b):\n{body}"
    assert extract_code(body) == body
    assert extract_code("  \n") is None


def test_bad_code_problem_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        CodeDomain(tmp_path / "missing.jsonl")
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task_id": "x", "prompt": "def f():\\n"}\n')
    with pytest.raises(ConfigError, match="line 1 lacks"):
        CodeDomain(path)
    with pytest.raises(ConfigError, match="bad sandbox limits"):
        CodeDomain(limits={"seconds": 3})
    assert build_domain("code", limits={"wall_s": 2.0}).limits.wall_s == 2.0


# -- code: verified in the sandbox -------------------------------------------------------------


def _verify_all(domain: CodeDomain, pairs: list[tuple[Problem, str]]):
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda pair: domain.verify(*pair), pairs))


def test_every_canonical_solution_passes_and_wrong_ones_fail(code):
    problems = [code.problem(row) for row in code.rows()]
    wrong = [p for p in problems if p.metadata["task_id"] in {"pedagogy/0", "pedagogy/20"}]
    pairs = [(p, code.solve(p)) for p in problems]
    pairs += [(p, f"A:{p.answer.splitlines()[0]}\n    return None") for p in wrong]
    verdicts = _verify_all(code, pairs)
    failed = [
        (p.metadata["task_id"], v.detail) for p, v in zip(problems, verdicts) if not v.correct
    ]
    assert not failed
    assert not [v for v in verdicts[len(problems) :] if v.correct or "Error" not in v.detail]


def test_every_test_rejects_a_stub(code):
    """Each problem's tests catch a function that returns None (one sandbox run for all)."""
    from pedagogy.tools.sandbox import run_python_sync

    rows = code.rows()
    cases = [
        (r["task_id"], r["prompt"] + "    return None\n" + r["test"], r["entry_point"])
        for r in rows
    ]
    script = (
        f"for task, source, entry in {cases!r}:\n"
        "    space = {}\n"
        "    exec(source, space)\n"
        "    try:\n"
        "        space['check'](space[entry])\n"
        "        print('PASSED', task)\n"
        "    except Exception:\n"
        "        print('rejected', task)\n"
    )
    result = run_python_sync(script)
    assert result.ok, result
    assert result.stdout.split().count("rejected") == len(rows), result.stdout


def test_code_response_forms_and_failures():
    # The wall limit far above the CPU limit: on a busy machine a correct answer may take
    # seconds of wall time, and only the CPU limit stops the endless loop.
    code = CodeDomain(limits={"wall_s": 60.0, "cpu_s": 1.0})
    add = next(code.problem(r) for r in code.rows() if r["entry_point"] == "add")
    cases = {
        "```python\ndef add(a, b):\n    return a + b\n```": True,
        "T:sum\nA:def add(a, b):\n    return a + b": True,
        "def add(a, b):\n    print('x' * 10000)\n    return a + b": True,  # chatty is fine
        "    return b + a\n": True,  # HumanEval-style body
        "A:def add(a, b):\n    return a - b": False,
        "A:def add(a, b):\n    while True:\n        pass": False,
        "import sys\nsys.exit(0)": False,
        "A:def add(a, b) return": False,
        **dict.fromkeys(GARBAGE, False),
    }
    verdicts = _verify_all(code, [(add, response) for response in cases])
    for (response, expected), verdict in zip(cases.items(), verdicts):
        assert verdict.correct is expected, (response, verdict)
        assert verdict.verifier == "code:tests" and verdict.score == float(expected)
    details = dict(zip(cases, (v.detail for v in verdicts)))
    assert "assert candidate" in details["A:def add(a, b):\n    return a - b"]
    assert "cpu_limit" in details["A:def add(a, b):\n    while True:\n        pass"]
    # A program that never ends and uses no CPU is stopped by the wall limit, whatever the load.
    short = CodeDomain(limits={"wall_s": 0.5})
    asleep = short.verify(add, "A:def add(a, b):\n    import time\n    time.sleep(600)")
    assert not asleep.correct and asleep.detail.startswith("timeout after 0.5 s"), asleep
    assert "SyntaxError" in details["A:def add(a, b) return"]
    assert details[""] == "no code found in the response"
    restored = Problem(**json.loads(json.dumps(add.__dict__)))
    assert code.verify(restored, code.solve(add)) == code.verify(add, code.solve(add))


def test_code_demonstration_runs_the_docstring_examples(code):
    from pedagogy.tools.sandbox import run_python_sync

    for p in [code.problem(code.rows()[i]) for i in (0, 20, 45)]:
        call, answer = code.demonstrate(p)
        assert call["tool"] == "python" and answer == {"answer": p.answer}
        result = run_python_sync(call["arguments"]["code"])
        shown = re.findall(r">>> .+\n\s+(.+)\n", p.prompt)
        assert shown and result.ok, result
        assert result.stdout.splitlines() == [str(ast.literal_eval(s)) for s in shown]


def test_an_acting_answer_is_the_whole_function(code):
    from pedagogy.agents.acting import parse_action, render_action

    p = code.problem(code.rows()[0])
    function = code.demonstrate(p)[-1]["answer"]
    assert "\n" in function.strip()
    text = f"T:Write it.\nA:{function}"
    action = parse_action(text, multiline_answer=True)
    assert action.kind == "answer" and action.answer == function.strip("\n").rstrip()
    assert parse_action(text).answer == function.strip().splitlines()[0].strip()
    assert parse_action(render_action(action), multiline_answer=True).answer == action.answer
    assert code.verify(p, f"A:{action.answer}").correct
    assert code.multiline_answers
