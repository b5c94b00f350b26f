"""A made-up world as a Domain: multi-hop questions answerable only by looking facts up.

A seed builds a world of fictional people, cities, companies, rivers and countries, with names
from a syllable generator (checked against an English word list, so no name is a real word, and
every name token is unique, so a search for a name finds that entity's facts and no other's).
Each fact is one short document of the corpus the ``retrieve`` tool searches. A question chains
1-3 facts ("Where was the founder of Zarbex Corp born?"); level = hops - 1. No model can know the
answer beforehand and the question never contains it, so a correct answer shows the facts were
found: the domain for teaching a student to use a retrieval tool.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pedagogy.domains.base import Problem, Verdict, extract_final_answer
from pedagogy.domains.jsonl import normalise_answer
from pedagogy.errors import ConfigError, UnknownNameError

__all__ = ["RELATIONS", "Entity", "Fact", "Relation", "World", "WorldDomain", "english_words"]

SKILL = "facts"
MAX_HOPS = 3


@dataclass(frozen=True)
class Relation:
    """One kind of fact: its subject kinds, its object kind (None: a number) and its wordings."""

    subjects: tuple[str, ...]
    obj: str | None
    """The kind of entity it points to; None for a number (an attribute, only a chain's end)."""
    doc: str
    """The corpus sentence, with {s} and {o}."""
    ask: str
    """The question when this is the chain's last hop, with {s}."""
    phrase: str
    """The noun phrase naming its object, with {s}: how an inner hop reads."""
    query: str
    """The retrieval query a demonstration sends, with {s}: the name and the doc's key words."""


RELATIONS: dict[str, Relation] = {
    "born_in": Relation(
        ("person",), "city", "{s} was born in the city of {o}.", "Where was {s} born?",
        "the birthplace of {s}", "{s} born city",
    ),
    "works_for": Relation(
        ("person",), "company", "{s} works for {o}.", "Who does {s} work for?",
        "the employer of {s}", "{s} works for",
    ),
    "founded_by": Relation(
        ("company",), "person", "The founder of {s} is {o}.", "Who founded {s}?",
        "the founder of {s}", "{s} founder",
    ),
    "based_in": Relation(
        ("company",), "city", "{s} is based in the city of {o}.", "Where is {s} based?",
        "the home city of {s}", "{s} based city",
    ),
    "located_in": Relation(
        ("city",), "country", "{s} lies in the country of {o}.", "In which country is {s}?",
        "the country of {s}", "{s} country",
    ),
    "on_river": Relation(
        ("city",), "river", "{s} lies on {o}.", "On which river is {s}?",
        "the river of {s}", "{s} lies river",
    ),
    "capital": Relation(
        ("country",), "city", "The capital of {s} is {o}.", "What is the capital of {s}?",
        "the capital of {s}", "{s} capital",
    ),
    "rises_in": Relation(
        ("river",), "country", "{s} rises in {o}.", "Where does {s} rise?",
        "the source country of {s}", "{s} rises",
    ),
    "birth_year": Relation(
        ("person",), None, "{s} was born in the year {o}.", "In which year was {s} born?",
        "the birth year of {s}", "{s} born year",
    ),
    "founding_year": Relation(
        ("company",), None, "{s} was founded in the year {o}.", "In which year was {s} founded?",
        "the founding year of {s}", "{s} founded year",
    ),
    "population": Relation(
        ("city", "country"), None, "{s} has a population of {o}.", "What is the population of {s}?",
        "the population of {s}", "{s} population",
    ),
    "length_km": Relation(
        ("river",), None, "{s} is {o} km long.", "How long is {s} in km?",
        "the length of {s}", "{s} km long",
    ),
}  # fmt: skip
"""Every fact kind; a chain walks them in this order, so the world's questions are stable."""


@dataclass(frozen=True)
class Entity:
    name: str
    kind: str
    """person | city | company | river | country."""

    @property
    def mention(self) -> str:
        """How a sentence names it: rivers take an article ("the Vell River")."""
        return f"the {self.name}" if self.kind == "river" else self.name


@dataclass(frozen=True)
class Fact:
    id: str
    subject: str
    relation: str
    value: str
    """The object entity's name, or the number as a string."""
    text: str


# -- names -------------------------------------------------------------------------------------

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gl", "k", "kr", "kh", "l", "m", "n", "p", "qu", "r",
           "s", "sk", "t", "th", "v", "vr", "z", "zh")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
_INNER_CODAS = ("", "", "", "n", "r", "l")
_FINAL_CODAS = ("", "", "n", "r", "l", "th", "x", "sk", "m", "z", "v", "nd", "rt", "ntz")
_COUNTRY_ENDS = ("ia", "and", "ar", "esh")
_COMPANY_ENDS = ("Corp", "Labs", "Group", "Holdings", "Systems")


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """151k English words (reasoning-gym's word list), read without importing reasoning-gym
    (its import registers 100+ datasets); a short fallback list if it is missing."""
    spec = importlib.util.find_spec("reasoning_gym")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "words3to10.txt"
        if path.is_file():
            return frozenset(path.read_text(encoding="utf-8").split())
    return frozenset("bard bone dark fire gold iron king lord moon rain river star stone".split())


def _template_words() -> set[str]:
    texts = [w for r in RELATIONS.values() for w in (r.doc, r.ask, r.phrase, r.query)]
    texts += [*_COMPANY_ENDS, "river km the"]
    return {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}


class _Namer:
    """Unique made-up name tokens: 4-10 letters, never an English word or a template word."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used = set(_template_words())
        self.words = english_words()

    def token(self, syllables: int, ending: str = "") -> str:
        for _ in range(10_000):
            parts = [
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_INNER_CODAS)
                for _ in range(syllables - 1)
            ]
            parts.append(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS))
            word = "".join(parts) + (ending or self.rng.choice(_FINAL_CODAS))
            if 4 <= len(word) <= 10 and word not in self.used and word not in self.words:
                self.used.add(word)
                return word.capitalize()
        raise ConfigError("ran out of made-up names: lower n_entities (at most 1000)")

    def name(self, kind: str) -> str:
        rng = self.rng
        if kind == "person":
            return f"{self.token(rng.choice((2, 3)))} {self.token(rng.choice((1, 2)))}"
        if kind == "country":
            return self.token(2, rng.choice(_COUNTRY_ENDS))
        if kind == "river":
            return f"{self.token(rng.choice((1, 2)))} River"
        if kind == "company":
            return f"{self.token(2)} {rng.choice(_COMPANY_ENDS)}"
        return self.token(2)


# -- the world ---------------------------------------------------------------------------------


@dataclass
class World:
    """Entities and facts; each (subject, relation) has exactly one fact."""

    seed: int
    entities: dict[str, Entity]
    facts: list[Fact]
    _index: dict[tuple[str, str], Fact] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {(f.subject, f.relation): f for f in self.facts}

    def fact(self, subject: str, relation: str) -> Fact | None:
        return self._index.get((subject, relation))

    @classmethod
    def build(cls, seed: int, n_entities: int) -> World:
        """The world of a seed: the same seed and size always give the same world."""
        if isinstance(n_entities, bool) or not isinstance(n_entities, int):
            raise ConfigError(f"n_entities must be an integer, got {n_entities!r}")
        if not 30 <= n_entities <= 1000:
            raise ConfigError(f"n_entities must be in 30..1000, got {n_entities}")
        rng = random.Random(f"pedagogy-world-{seed}")
        namer = _Namer(rng)
        n_countries = max(3, round(n_entities * 0.05))
        n_rivers = max(3, round(n_entities * 0.08))
        n_cities = max(n_countries, round(n_entities * 0.25))
        n_companies = max(3, round(n_entities * 0.2))
        n_people = n_entities - n_countries - n_rivers - n_cities - n_companies
        counts = {"country": n_countries, "river": n_rivers, "city": n_cities}
        counts |= {"company": n_companies, "person": n_people}
        kinds: dict[str, list[Entity]] = {
            kind: [Entity(namer.name(kind), kind) for _ in range(count)]
            for kind, count in counts.items()
        }
        countries, rivers, cities = kinds["country"], kinds["river"], kinds["city"]
        raw: list[tuple[Entity, str, Any]] = []  # (subject, relation, object entity or number)
        capitals: dict[str, Entity] = {}
        for i, city in enumerate(cities):
            # Every country and river gets a city first, so every capital exists.
            country = countries[i] if i < len(countries) else rng.choice(countries)
            capitals.setdefault(country.name, city)
            river = rivers[i] if i < len(rivers) else rng.choice(rivers)
            raw += [(city, "located_in", country), (city, "on_river", river)]
            raw.append((city, "population", rng.randrange(2_000, 900_000)))
        for country in countries:
            raw.append((country, "capital", capitals[country.name]))
            raw.append((country, "population", rng.randrange(1_000_000, 80_000_000)))
        for river in rivers:
            raw.append((river, "rises_in", rng.choice(countries)))
            raw.append((river, "length_km", rng.randrange(40, 3_200)))
        born = {p.name: rng.randrange(1890, 1991) for p in kinds["person"]}
        for company in kinds["company"]:
            founder = rng.choice(kinds["person"])
            raw += [(company, "founded_by", founder), (company, "based_in", rng.choice(cities))]
            raw.append((company, "founding_year", born[founder.name] + rng.randrange(20, 35)))
        for person in kinds["person"]:
            raw.append((person, "born_in", rng.choice(cities)))
            raw.append((person, "works_for", rng.choice(kinds["company"])))
            raw.append((person, "birth_year", born[person.name]))
        facts = []
        for i, (subject, relation, obj) in enumerate(raw):
            value = obj.name if isinstance(obj, Entity) else str(obj)
            shown = obj.mention if isinstance(obj, Entity) else value
            text = _sentence(RELATIONS[relation].doc.format(s=subject.mention, o=shown))
            facts.append(Fact(f"f{i}", subject.name, relation, value, text))
        entities = {e.name: e for group in kinds.values() for e in group}
        return cls(seed, entities, facts)

    def corpus(self) -> list[dict[str, str]]:
        """One document per fact: ``{"id", "text"}``."""
        return [{"id": f.id, "text": f.text} for f in self.facts]

    def walk(self, start: str, relations: list[str] | tuple[str, ...]) -> list[Fact] | None:
        """The facts a chain of relations follows from `start`, None where it breaks off."""
        facts, subject = [], start
        for relation in relations:
            fact = self.fact(subject, relation)
            if fact is None:
                return None
            facts.append(fact)
            subject = fact.value
        return facts

    def chains(self, hops: int) -> list[tuple[str, tuple[str, ...]]]:
        """Every (start, relations) chain of `hops` facts through distinct entities; a number
        only at the end. In world order, so a seeded pick is stable."""
        out: list[tuple[str, tuple[str, ...]]] = []

        def extend(start: str, at: str, path: tuple[str, ...], seen: set[str]) -> None:
            if len(path) == hops:
                out.append((start, path))
                return
            for relation in RELATIONS:
                fact = self.fact(at, relation)
                if fact is None:
                    continue
                is_number = RELATIONS[relation].obj is None
                if (is_number and len(path) + 1 < hops) or fact.value in seen:
                    continue
                extend(start, fact.value, path + (relation,), seen | {fact.value})

        for name in self.entities:
            extend(name, name, (), {name})
        return out


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _normalise(text: str | None) -> Any:
    """Case, spacing, a final full stop, a leading article and thousands commas do not count."""
    if text is None:
        return None
    cleaned = " ".join(str(text).split()).strip().rstrip(".")
    cleaned = re.sub(r"^the\s+", "", cleaned, flags=re.IGNORECASE)
    return normalise_answer(cleaned)


# -- the domain --------------------------------------------------------------------------------


class WorldDomain:
    """Questions of 1-3 hops over a generated world; its corpus is the ``retrieve`` tool's."""

    def __init__(
        self,
        seed: int = 0,
        n_entities: int = 120,
        *,
        demo_thoughts: bool = True,
        name: str = "world",
    ):
        """
        Args:
            seed: which world; every seed gives another set of entities, names and facts.
            n_entities: how many entities (30..1000; 60-200 suits a small retriever).
            demo_thoughts: whether ``demonstrate`` writes a thought before each lookup.
        """
        self.name = name
        self.seed = seed
        self.n_entities = n_entities
        self.demo_thoughts = demo_thoughts
        self.world = World.build(seed, n_entities)
        self._chains: dict[int, list[tuple[str, tuple[str, ...]]]] = {}

    # -- tools ---------------------------------------------------------------------------------

    def corpus(self) -> list[dict[str, str]]:
        return self.world.corpus()

    def write_corpus(self, path: str | Path) -> Path:
        """Write the corpus as JSONL (one ``{"id", "text"}`` a line) for ``retrieve``'s path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = (json.dumps(doc, ensure_ascii=False) for doc in self.corpus())
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    def tools(self) -> list[str]:
        return ["retrieve"]

    def tool_options(self) -> dict[str, dict[str, Any]]:
        return {"retrieve": {"documents": self.corpus()}}

    # -- skills and levels ---------------------------------------------------------------------

    def skills(self) -> list[str]:
        return [SKILL]

    def levels(self, skill: str) -> list[int]:
        self._check_skill(skill)
        return list(range(MAX_HOPS))

    def _check_skill(self, skill: str) -> None:
        if skill != SKILL:
            raise UnknownNameError(f"skill of domain {self.name!r}", skill, [SKILL])

    def chains(self, level: int) -> list[tuple[str, tuple[str, ...]]]:
        """Every question a level can pose, as (start entity, relations)."""
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < MAX_HOPS:
            raise ConfigError(f"level {level!r} is out of range for {SKILL!r}: choose 0..2")
        if level not in self._chains:
            self._chains[level] = [
                chain for chain in self.world.chains(level + 1) if self._problem(*chain)
            ]
        return self._chains[level]

    # -- problems ------------------------------------------------------------------------------

    def generate(self, rng: random.Random, n: int, skill: str, level: int) -> list[Problem]:
        self._check_skill(skill)
        chains = self.chains(level)
        if n < 1:
            return []
        picked = rng.sample(chains, n) if n <= len(chains) else rng.choices(chains, k=n)
        return [self._problem(start, relations) for start, relations in picked]

    def question(self, start: str, relations: tuple[str, ...] | list[str]) -> str:
        """The question a chain asks, e.g. "Where was the founder of Zarbex Corp born?"."""
        subject = self.world.entities[start].mention
        for relation in relations[:-1]:
            subject = RELATIONS[relation].phrase.format(s=subject)
        return _sentence(RELATIONS[relations[-1]].ask.format(s=subject))

    def _problem(self, start: str, relations: tuple[str, ...] | list[str]) -> Problem | None:
        """The problem of a chain; None when the question would give the answer away."""
        facts = self.world.walk(start, relations)
        if facts is None:
            return None
        prompt = f"Q: {self.question(start, relations)}"
        answer = facts[-1].value
        if re.search(rf"\b{re.escape(answer)}\b", prompt, flags=re.IGNORECASE):
            return None
        return Problem(
            domain=self.name,
            skill=SKILL,
            level=len(relations) - 1,
            prompt=prompt,
            answer=answer,
            metadata={
                "world": {"seed": self.seed, "n_entities": self.n_entities},
                "start": start,
                "relations": list(relations),
                "facts": [f.id for f in facts],
            },
        )

    def _facts(self, problem: Problem) -> list[Fact] | None:
        """The chain's facts in this world; None for a problem of another world or shape."""
        meta = problem.metadata or {}
        if meta.get("world") != {"seed": self.seed, "n_entities": self.n_entities}:
            return None
        relations = meta.get("relations")
        if not isinstance(relations, list) or not all(r in RELATIONS for r in relations):
            return None
        facts = self.world.walk(str(meta.get("start")), relations)
        return facts if facts and facts[-1].value == problem.answer else None

    def variants(self, problem: Problem, rng: random.Random, n: int) -> list[Problem]:
        """Up to n questions along the same relations from other start entities."""
        relations = tuple((problem.metadata or {}).get("relations") or ())
        if problem.skill != SKILL or self._facts(problem) is None:
            return []
        same = [c for c in self.chains(len(relations) - 1) if c[1] == relations]
        same = [c for c in same if c[0] != problem.metadata.get("start")]
        return [self._problem(*c) for c in rng.sample(same, min(n, len(same)))]

    # -- answers -------------------------------------------------------------------------------

    def parse_answer(self, response: str) -> str | None:
        return extract_final_answer(response)

    def verify(self, problem: Problem, response: str) -> Verdict:
        parsed = self.parse_answer(response or "")
        correct = parsed is not None and _normalise(parsed) == _normalise(problem.answer)
        if parsed is None:
            detail = "no answer found in the response"
        else:
            detail = "" if correct else f"expected {problem.answer!r}, got {parsed!r}"
        return Verdict(
            correct=correct,
            score=1.0 if correct else 0.0,
            parsed_answer=parsed,
            verifier="world:exact",
            detail=detail,
        )

    def solve(self, problem: Problem) -> str | None:
        """The chained facts then the answer: ``S:<subject> <relation> <object>`` a hop."""
        facts = self._facts(problem)
        if facts is None:
            return None
        steps = [f"S:{f.subject} {f.relation} {f.value}" for f in facts]
        return "\n".join([*steps, f"A:{problem.answer}"])

    def demonstrate(self, problem: Problem) -> list[dict[str, Any]]:
        """One ``retrieve`` a hop (the current entity's name and the fact's key words), then
        the answer; the agent layer runs the lookups for real."""
        facts = self._facts(problem)
        if facts is None:
            raise ConfigError(
                f"problem {problem.id} is not a question about world seed={self.seed}, "
                f"n_entities={self.n_entities}: build the domain with the world that posed it"
            )
        actions: list[dict[str, Any]] = []
        for fact in facts:
            relation = RELATIONS[fact.relation]
            action: dict[str, Any] = {
                "tool": "retrieve",
                "arguments": {"query": relation.query.format(s=fact.subject)},
            }
            if self.demo_thoughts:
                mention = self.world.entities[fact.subject].mention
                action = {"thought": f"Find {relation.phrase.format(s=mention)}.", **action}
            actions.append(action)
        actions.append({"answer": problem.answer})
        return actions
