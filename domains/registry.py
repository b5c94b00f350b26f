"""Domains by name, so configs and the CLI can say ``domain: reasoning_gym``.

Built-ins are registered here; users add their own with ``register_domain("mine", MyDomain)``.
A factory is any callable taking keyword options and returning a Domain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pedagogy.domains.base import Domain
from pedagogy.errors import ConfigError, UnknownNameError

__all__ = [
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


_REGISTRY: dict[str, DomainFactory] = {
    "reasoning_gym": _reasoning_gym,
    "jsonl": _jsonl,
    "world": _world,
    "code": _code,
}


_BUILT_IN = dict(_REGISTRY)
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
    factory = _REGISTRY.get(name)
    if factory is not None and factory is _BUILT_IN.get(name):
        return _OPTIONS_OF[name]
    return factory


def register_domain(name: str, factory: DomainFactory, *, replace: bool = False) -> None:
    """Make ``build_domain(name, **options)`` call ``factory(**options)``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a domain name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ConfigError(f"the factory for domain {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not replace:
        raise ConfigError(
            f"domain {name!r} is already registered; pick another name or pass replace=True"
        )
    _REGISTRY[name] = factory


def known_domains() -> list[str]:
    return sorted(_REGISTRY)


def build_domain(name: str, **options: Any) -> Domain:
    """A domain by registered name, e.g. ``build_domain("jsonl", path="qa.jsonl")``."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownNameError("domain", name, list(_REGISTRY))
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
