"""Build a backend from its config. One place that knows every backend kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pedagogy.backends.base import Backend
from pedagogy.registry import Registry

if TYPE_CHECKING:
    from pedagogy.config import BackendConfig
    from pedagogy.domains.base import Domain

BackendFactory = Callable[["BackendConfig", "Domain"], Backend]


def _scripted(cfg: BackendConfig, domain: Domain) -> Backend:
    from pedagogy.backends.scripted import ScriptedBackend

    return ScriptedBackend.from_domain(domain, model=cfg.model or None)


def _transformers(cfg: BackendConfig, domain: Domain) -> Backend:
    from pedagogy.backends.transformers import TransformersBackend

    return TransformersBackend(cfg.model, **cfg.options)


def _litellm(cfg: BackendConfig, domain: Domain) -> Backend:
    from pedagogy.backends.litellm import LiteLLMBackend

    return LiteLLMBackend(
        cfg.model,
        api_base=cfg.api_base,
        api_key_env=cfg.api_key_env,
        max_concurrency=cfg.max_concurrency,
        **cfg.options,
    )


BACKENDS: Registry[BackendFactory] = Registry(
    "backend",
    {"scripted": _scripted, "transformers": _transformers, "litellm": _litellm},
    register_with="register_backend",
)


_BUILT_IN = dict(BACKENDS)
_OPTIONS_OF: dict[str, str | None] = {
    "scripted": None,
    "transformers": "pedagogy.backends.transformers:TransformersBackend",
    "litellm": "pedagogy.backends.litellm:LiteLLMBackend",
}
"""What takes each built-in kind's `options` as keyword parameters; None: it takes none."""


def backend_options_target(kind: str) -> tuple[bool, str | None]:
    """(checked, target) for backend `kind`'s options: a built-in kind's options are checked
    against its class ("module:attribute"; None: no options); a custom kind's factory reads its
    config as it likes, so its options are not checked."""
    factory = BACKENDS.get(kind, None)
    if factory is not None and factory is _BUILT_IN.get(kind):
        return True, _OPTIONS_OF[kind]
    return False, None


def register_backend(kind: str, factory: BackendFactory, *, replace: bool = False) -> None:
    """Make a custom backend kind available to configs; a taken kind needs `replace=True`."""
    BACKENDS.register(kind, factory, replace=replace)


def check_backend_kind(kind: str) -> None:
    BACKENDS.get(kind)  # unknown: the valid kinds and how to register one


def build_backend(cfg: BackendConfig, domain: Domain, **overrides: Any) -> Backend:
    check_backend_kind(cfg.kind)
    if overrides:
        cfg = cfg.model_copy(update=overrides)
    return BACKENDS[cfg.kind](cfg, domain)
