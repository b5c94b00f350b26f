"""The registered names a config's fields hold, checked when the config loads.

`domain.name`, `agent.tools` (and the keys of `agent.tool_options`), `episodes.graph`,
`training.kind`, `curriculum.sampler`, `episodes.intervention` and `episodes.style` each name a
part in a registry (`pedagogy.registry.Registry`): the built-ins and whatever a plugin
registered. `pedagogy.config.config_from_dict` imports the config's plugins first, then asks
here: an unknown name is one line with the field, the valid names and how to register one.

An acting config's tools must also be ones its domain can serve: a tool that needs something
from its domain (`pedagogy.tools.registry.tool_needs`: `retrieve` needs a corpus) is refused,
naming the tools the domain can serve, unless the domain or `agent.tool_options` supplies it.
Only such a tool makes the check build the domain; every other config is checked from names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pedagogy.errors import UnknownNameError
from pedagogy.registry import Registry

if TYPE_CHECKING:
    from pedagogy.config import RunConfig

__all__ = ["NAMED_FIELDS", "config_name_problems", "tool_serving_problems"]


def _domains() -> Registry:
    from pedagogy.domains.registry import DOMAINS

    return DOMAINS


def _tools() -> Registry:
    from pedagogy.tools.registry import TOOLS

    return TOOLS


def _graphs() -> Registry:
    from pedagogy.graph_names import GRAPHS  # not graphs.registry: training imports config

    return GRAPHS


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


def _graph_name(config: RunConfig) -> list[str]:
    """`episodes.graph` when it is a name: an import path ("module:function") is resolved, and
    its errors told, when the run starts."""
    graph = config.episodes.graph
    return [] if graph is None or ":" in graph else [graph]


Names = Callable[["RunConfig"], "str | list[str]"]

NAMED_FIELDS: list[tuple[str, Names, Callable[[], Registry], tuple[str, ...]]]
NAMED_FIELDS = [
    ("domain.name", lambda c: c.domain.name, _domains, ()),
    ("agent.tools", lambda c: list(c.agent.tools or []), _tools, ()),
    ("agent.tool_options", lambda c: list(c.agent.tool_options), _tools, ()),
    ("episodes.graph", _graph_name, _graphs, ()),
    ("training.kind", lambda c: c.training.kind, _trainers, ()),
    ("curriculum.sampler", lambda c: c.curriculum.sampler, _samplers, ()),
    ("episodes.intervention", lambda c: c.episodes.intervention, _policies, ()),
    ("episodes.style", lambda c: c.episodes.style, _styles, ("probe",)),
]
"""(field, the name or names it holds in a config, the registry that knows them, names valid
besides: `probe` chooses among the styles each round)."""

_HINTS = {"episodes.graph": "; or name a graph factory by its import path, 'module:function'"}


def config_name_problems(config: RunConfig) -> list[str]:
    """One line per name in `config` that no registry knows; [] when all are known."""
    problems = []
    for field, names_of, registry_of, also in NAMED_FIELDS:
        registry, names = registry_of(), names_of(config)
        for name in [names] if isinstance(names, str) else names:
            if name not in registry and name not in also:
                error = UnknownNameError(
                    registry.kind, name, [*registry, *also], register_with=registry.register_with
                )
                problems.append(f"{field}: {error}{_HINTS.get(field, '')}")
    return problems


def tool_serving_problems(config: RunConfig) -> list[str]:
    """One line per tool of an acting config (`agent.tools`) that needs what neither its domain
    nor `agent.tool_options` supplies, naming the tools the domain can serve. Asked once the
    names and options are known to be right (the domain is built from them)."""
    from pedagogy.tools.registry import TOOLS, tool_needs

    if not config.agent.enabled:
        return []
    given = config.agent.tool_options
    wanting = [
        name
        for name in config.agent.tools or []
        if tool_needs(name) and not set(tool_needs(name)) & set(given.get(name, {}))
    ]
    if not wanting:
        return []
    supplied = _supplied_tool_options(config)
    if supplied is None:
        return []

    def served(name: str) -> bool:
        needs = set(tool_needs(name))
        return not needs or bool(needs & {*given.get(name, {}), *supplied.get(name, {})})

    domain, serves = config.domain.name, ", ".join(t for t in TOOLS.names() if served(t))
    return [
        f"agent.tools: tool {name!r} needs {' or '.join(tool_needs(name))}, which domain "
        f"{domain!r} does not supply; it can serve: {serves}; choose among those, or give "
        f"agent.tool_options.{name}.{tool_needs(name)[0]}"
        for name in wanting
        if not served(name)
    ]


def _supplied_tool_options(config: RunConfig) -> dict[str, dict[str, Any]] | None:
    """The options per tool that `config`'s domain supplies; None when the domain cannot be
    built here (the run builds it again, and its error is told there in its own words).

    A domain class without `tool_options` supplies none, which is told without building it
    (building reasoning-gym's imports the library: seconds)."""
    from pedagogy.domains.base import domain_tool_options
    from pedagogy.domains.registry import build_domain, domain_options_target

    target = domain_options_target(config.domain.name)
    if isinstance(target, str):  # a built-in: "module:Class"
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr, None)
    if isinstance(target, type) and not callable(getattr(target, "tool_options", None)):
        return {}
    try:
        domain = build_domain(config.domain.name, **config.domain.options)
    except Exception:
        return None
    return domain_tool_options(domain)
