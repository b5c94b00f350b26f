"""One registry type for every kind of named part: domains, tools, episode graphs, backends,
trainers, samplers, intervention policies, explanation styles.

A `Registry` maps names to factories (or classes). It is a dict, so the module-level names that
code and tests read (`DOMAINS`, `TOOLS`, `GRAPHS`, `BACKENDS`, `SAMPLERS`, ...) keep working,
with three additions:
`register(name, factory, replace=False)` refuses a clash unless told to replace, `get(name)`
without a default raises `UnknownNameError` listing the valid names and how to register one
(with a default it is `dict.get`), and `names()` is the sorted names.

It lives beside `pedagogy.errors`, the only module it imports, so that every layer (domains,
backends and tools at the bottom, agents, graphs, memory and training) may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pedagogy.errors import ConfigError, UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")
_RAISE: Any = object()


class Registry(dict[str, T], Generic[T]):
    """Named factories of one kind of part.

    `kind` names the part in errors ("trainer"); `register_with` is the public function a plugin
    calls to add one ("register_trainer"), named by the unknown-name error."""

    def __init__(
        self, kind: str, entries: Mapping[str, T] | None = None, *, register_with: str
    ) -> None:
        super().__init__(entries or {})
        self.kind, self.register_with = kind, register_with

    def register(self, name: str, factory: T, *, replace: bool = False) -> None:
        """Make `factory` the part called `name`; a taken name needs `replace=True`."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise ConfigError(
                f"the factory for {self.kind} {name!r} must be callable, got {factory!r}"
            )
        if name in self and not replace:
            raise ConfigError(
                f"{self.kind} {name!r} is already registered; pick another name or pass "
                "replace=True"
            )
        self[name] = factory

    def get(self, name: str, default: Any = _RAISE) -> Any:  # type: ignore[override]
        """The part called `name`; unknown: `default` when given, else `UnknownNameError`."""
        if name in self:
            return self[name]
        if default is not _RAISE:
            return default
        raise self.unknown(name)

    def names(self) -> list[str]:
        return sorted(self)

    def unknown(self, name: str) -> UnknownNameError:
        """The error for an unknown `name`: the valid names and how to register another."""
        return UnknownNameError(self.kind, name, list(self), register_with=self.register_with)

    def copy(self) -> Registry[T]:  # type: ignore[override]
        return Registry(self.kind, self, register_with=self.register_with)
