"""Domains by name, so configs and the CLI can say ``domain: reasoning_gym``.

Built-ins are registered here; users add their own with ``register_domain("mine", MyDomain)``.
A factory is any callable taking keyword options and returning a Domain. `DOMAINS` is the
registry (`pedagogy.registry.Registry`): a config's `domain.name` is checked against it when it
loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pedagogy.domains.base import Domain
from pedagogy.errors import ConfigError
from pedagogy.registry import Registry

__all__ = [
    "DOMAINS",
    "DomainFactory",
    "build_domain",
    "domain_options_target",
    "known_domains",
    "register_domain",
]

DomainFactory = Callable[..., Domain]


def _reasoning_gym(**options: Any) -> Domain:
    from pedagogy.domains.reasoning_gym import ReasoningGymDomain

    return ReasoningGymDomain(**options)


def _jsonl(**options: Any) -> Domain:
    from pedagogy.domains.jsonl import JsonlDomain

    return JsonlDomain(**options)


def _world(**options: Any) -> Domain:
    from pedagogy.domains.world import WorldDomain

    return WorldDomain(**options)


def _code(**options: Any) -> Domain:
    from pedagogy.domains.code import CodeDomain

    return CodeDomain(**options)


DOMAINS: Registry[DomainFactory] = Registry(
    "domain",
    {"reasoning_gym": _reasoning_gym, "jsonl": _jsonl, "world": _world, "code": _code},
    register_with="register_domain",
)
_REGISTRY = DOMAINS
"""The former name of `DOMAINS` (the same object)."""

_BUILT_IN = dict(DOMAINS)
_OPTIONS_OF = {
    "reasoning_gym": "pedagogy.domains.reasoning_gym:ReasoningGymDomain",
    "jsonl": "pedagogy.domains.jsonl:JsonlDomain",
    "world": "pedagogy.domains.world:WorldDomain",
    "code": "pedagogy.domains.code:CodeDomain",
}
"""What takes each built-in domain's options (its factory only forwards them)."""


def domain_options_target(name: str) -> str | Callable[..., Any] | None:
    """What takes domain `name`'s options as keyword parameters ("module:attribute" or the
    registered factory), for checking a config's options when it loads; None: unknown name."""
    factory = DOMAINS.get(name, None)
    if factory is not None and factory is _BUILT_IN.get(name):
        return _OPTIONS_OF[name]
    return factory


def register_domain(name: str, factory: DomainFactory, *, replace: bool = False) -> None:
    """Make ``build_domain(name, **options)`` call ``factory(**options)``."""
    DOMAINS.register(name, factory, replace=replace)


def known_domains() -> list[str]:
    return DOMAINS.names()


def build_domain(name: str, **options: Any) -> Domain:
    """A domain by registered name, e.g. ``build_domain("jsonl", path="qa.jsonl")``."""
    factory = DOMAINS.get(name)  # unknown: the valid names and how to register one
    try:
        domain = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options {sorted(options)} for domain {name!r}: {exc}") from exc
    if not isinstance(domain, Domain):
        raise ConfigError(
            f"the factory for domain {name!r} returned {type(domain).__name__}, which lacks the "
            "Domain methods (skills, levels, generate, parse_answer, verify, solve) or a name"
        )
    return domain
