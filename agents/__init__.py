"""Roles (teacher, student, generator, verifier) and curriculum samplers."""

from pedagogy.agents.curriculum import (
    BanditSampler,
    CurriculumSampler,
    UniformSampler,
    build_sampler,
)
from pedagogy.agents.roles import Generator, Student, Teacher, Verifier, make_turn

__all__ = [
    "BanditSampler",
    "CurriculumSampler",
    "Generator",
    "Student",
    "Teacher",
    "UniformSampler",
    "Verifier",
    "build_sampler",
    "make_turn",
]
