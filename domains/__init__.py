"""Domains: where problems come from and how answers are checked.

``ReasoningGymDomain`` adapts reasoning-gym's procedural datasets, ``JsonlDomain`` reads
question/answer files, and ``build_domain`` finds either (or yours) by name.
"""

from __future__ import annotations

from pedagogy.domains.arithmetic import (
    ExpressionError,
    compact_expression,
    evaluate,
    solve_steps,
    worked_solution,
)
from pedagogy.domains.base import (
    Domain,
    Problem,
    Verdict,
    arm_name,
    extract_final_answer,
    parse_arm,
)
from pedagogy.domains.jsonl import JsonlDomain, normalise_answer
from pedagogy.domains.reasoning_gym import (
    ARITHMETIC_SKILLS,
    MEASURED_CHAIN_SUM_LEVELS,
    ReasoningGymDomain,
    known_datasets,
)
from pedagogy.domains.registry import build_domain, known_domains, register_domain

__all__ = [
    "ARITHMETIC_SKILLS",
    "MEASURED_CHAIN_SUM_LEVELS",
    "Domain",
    "ExpressionError",
    "JsonlDomain",
    "Problem",
    "ReasoningGymDomain",
    "Verdict",
    "arm_name",
    "build_domain",
    "compact_expression",
    "evaluate",
    "extract_final_answer",
    "known_datasets",
    "known_domains",
    "normalise_answer",
    "parse_arm",
    "register_domain",
    "solve_steps",
    "worked_solution",
]
