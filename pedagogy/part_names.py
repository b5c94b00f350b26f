"""The registered names a config's fields hold, checked when the config loads.

`training.kind`, `curriculum.sampler`, `episodes.intervention` and `episodes.style` each name a
part in a registry (`pedagogy.registry.Registry`): the built-ins and whatever a plugin
registered. `pedagogy.config.config_from_dict` imports the config's plugins first, then asks
here: an unknown name is one line with the field, the valid names and how to register one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pedagogy.errors import UnknownNameError
from pedagogy.registry import Registry

if TYPE_CHECKING:
    from pedagogy.config import RunConfig

__all__ = ["NAMED_FIELDS", "config_name_problems"]


def _trainers() -> Registry:
    from pedagogy.training.trainers import _REGISTRY

    return _REGISTRY


def _samplers() -> Registry:
    from pedagogy.agents.curriculum import SAMPLERS

    return SAMPLERS


def _policies() -> Registry:
    from pedagogy.agents.intervention import POLICIES

    return POLICIES


def _styles() -> Registry:
    from pedagogy.agents.explanations import STYLES

    return STYLES


NAMED_FIELDS: list[tuple[str, Callable[[RunConfig], str], Callable[[], Registry], tuple[str, ...]]]
NAMED_FIELDS = [
    ("training.kind", lambda c: c.training.kind, _trainers, ()),
    ("curriculum.sampler", lambda c: c.curriculum.sampler, _samplers, ()),
    ("episodes.intervention", lambda c: c.episodes.intervention, _policies, ()),
    ("episodes.style", lambda c: c.episodes.style, _styles, ("probe",)),
]
"""(field, its value in a config, the registry that knows it, names valid besides: `probe`
chooses among the styles each round)."""


def config_name_problems(config: RunConfig) -> list[str]:
    """One line per field of `config` whose name no registry knows; [] when all are known."""
    problems = []
    for field, value_of, registry_of, also in NAMED_FIELDS:
        registry, name = registry_of(), value_of(config)
        if name not in registry and name not in also:
            error = UnknownNameError(
                registry.kind, name, [*registry, *also], register_with=registry.register_with
            )
            problems.append(f"{field}: {error}")
    return problems
