"""The registered names a config's fields hold, checked when the config loads.

`training.kind`, `curriculum.sampler`, `episodes.intervention` and `episodes.style` each name a
part in a registry (`pedagogy.registry.Registry`): the built-ins and whatever a plugin
registered. `pedagogy.config.config_from_dict` imports the config's plugins first, then asks
here: an unknown name is one line with the field, the valid names and how to register one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pedagogy.registry import Registry

if TYPE_CHECKING:
    from pedagogy.config import RunConfig

__all__ = ["NAMED_FIELDS", "config_name_problems"]


def _trainers() -> Registry:
    from pedagogy.training.trainers import _REGISTRY

    return _REGISTRY


NAMED_FIELDS: list[tuple[str, Callable[[RunConfig], str], Callable[[], Registry]]] = [
    ("training.kind", lambda c: c.training.kind, _trainers),
]
"""(field, its value in a config, the registry that knows it)."""


def config_name_problems(config: RunConfig) -> list[str]:
    """One line per field of `config` whose name no registry knows; [] when all are known."""
    problems = []
    for field, value_of, registry_of in NAMED_FIELDS:
        registry, name = registry_of(), value_of(config)
        if name not in registry:
            problems.append(f"{field}: {registry.unknown(name)}")
    return problems
