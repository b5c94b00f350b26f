"""Roles (teacher, student, generator, verifier), curriculum samplers, intervention policies and
explanation styles; a plugin adds its own with `register_sampler`, `register_policy` and
`register_style`."""

from pedagogy.agents.curriculum import (
    BanditSampler,
    CurriculumSampler,
    UniformSampler,
    build_sampler,
    register_sampler,
)
from pedagogy.agents.explanations import build_style, register_style
from pedagogy.agents.intervention import build_policy, register_policy
from pedagogy.agents.roles import Generator, Student, Teacher, Verifier, make_turn

__all__ = [
    "BanditSampler",
    "CurriculumSampler",
    "Generator",
    "Student",
    "Teacher",
    "UniformSampler",
    "Verifier",
    "build_policy",
    "build_sampler",
    "build_style",
    "make_turn",
    "register_policy",
    "register_sampler",
    "register_style",
]
