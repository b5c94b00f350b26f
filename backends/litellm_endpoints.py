"""Where the litellm backend sends a call: its endpoints (the primary, then the fallbacks), and
the check of a `fallbacks` option (also run when a config loads, before litellm is imported)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["FALLBACK_KEYS", "Endpoint", "fallback_problems"]


@dataclass(frozen=True)
class Endpoint:
    """Where a call can go: a litellm model, its api_base and the name of its key's variable."""

    model: str
    api_base: str | None = None
    api_key_env: str | None = None

    @property
    def label(self) -> str:
        """`model@api_base` (the base without credentials, query or fragment), or the model."""
        if not self.api_base:
            return self.model
        parts = urlsplit(self.api_base)
        host = parts.netloc.rpartition("@")[2]
        return f"{self.model}@{urlunsplit((parts.scheme, host, parts.path, '', ''))}"


FALLBACK_KEYS = ("model", "api_base", "api_key_env")
"""The keys of one entry of the litellm backend's `fallbacks` option."""


def fallback_problems(fallbacks: Any, where: str = "options.fallbacks") -> list[str]:
    """One line per problem of a `fallbacks` option (naming the entry, the key and the fix);
    [] when it is a list of {model, api_base, api_key_env} mappings with a model each."""
    if fallbacks is None:
        return []
    example = "e.g. [{model: openai/gpt-4o-mini, api_base: http://host:8000/v1, api_key_env: KEY}]"
    if not isinstance(fallbacks, (list, tuple)):
        return [f"{where}: expected a list of endpoints, got {type(fallbacks).__name__}; {example}"]
    problems = []
    for i, entry in enumerate(fallbacks):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{at}: expected a mapping with a model, got {entry!r}; {example}")
            continue
        for key in entry:
            if key not in FALLBACK_KEYS:
                problems.append(
                    f"{at}.{key}: unknown key; a fallback takes {', '.join(FALLBACK_KEYS)} "
                    "(the key itself never: name its variable in api_key_env)"
                )
        model = entry.get("model")
        if not isinstance(model, str) or not model:
            problems.append(
                f"{at}.model: a fallback needs a litellm model string like 'openai/gpt-4o-mini', "
                f"got {model!r}"
            )
        for key in ("api_base", "api_key_env"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                problems.append(
                    f"{at}.{key}: expected a non-empty string or nothing, got {value!r}"
                )
    return problems
