"""The parts a config names: which registry knows each, which module a run records for it
(`recorded_plugins`), so that later commands can import it again (`pedagogy.plugins`), and the
domain it builds (`build_domain_from`).

They live here, below the front door (`pedagogy.runner`, `pedagogy.cli`), because replay needs
them too and nothing under `pedagogy.graphs` may import the front door; `pedagogy.parts` and
`pedagogy.runner` re-export them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pedagogy.domains.base import domain_tools
from pedagogy.errors import ConfigError

if TYPE_CHECKING:
    from pedagogy.config import RunConfig

__all__ = ["build_domain_from", "recorded_plugins", "require_parts", "used_parts"]


def _registries() -> dict[str, dict[str, Any]]:
    """Every registry of named parts, by kind (the registries themselves: read, never written)."""
    from pedagogy.agents.curriculum import SAMPLERS
    from pedagogy.agents.explanations import STYLES
    from pedagogy.agents.intervention import POLICIES
    from pedagogy.backends.registry import BACKENDS
    from pedagogy.domains.registry import DOMAINS
    from pedagogy.graphs.registry import GRAPHS
    from pedagogy.tools.registry import TOOLS
    from pedagogy.training import trainers

    return {
        "domain": DOMAINS,
        "episode graph": GRAPHS,
        "tool": TOOLS,
        "backend kind": BACKENDS,
        "trainer": trainers._REGISTRY,  # the trainers' registry has no public name yet
        "explanation style": STYLES,
        "sampler": SAMPLERS,
        "intervention policy": POLICIES,
    }


def used_parts(config: RunConfig, tools: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(kind, name) of every registered part `config` names (and the acting student's `tools`)."""
    parts = [("domain", config.domain.name)]
    for backend in (
        config.teacher,
        config.student,
        config.generator.backend,
        getattr(config.verifier, "backend", None),
    ):
        if backend is not None:
            parts.append(("backend kind", backend.kind))
    for name in [*(config.agent.tools or []), *config.agent.tool_options, *tools]:
        parts.append(("tool", name))
    if config.episodes.style != "probe":  # probe chooses among the built-in styles
        parts.append(("explanation style", config.episodes.style))
    parts += [
        ("sampler", config.curriculum.sampler),
        ("intervention policy", config.episodes.intervention),
        ("trainer", config.training.kind),
    ]
    graph = config.episodes.graph
    if graph is not None and ":" not in graph:
        parts.append(("episode graph", graph))
    return list(dict.fromkeys(parts))


def _builtin(obj: Any) -> bool:
    return isinstance(obj, str) or str(getattr(obj, "__module__", "")).startswith("pedagogy.")


def _importable(module: str | None) -> bool:
    if not module or module == "__main__":
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def recorded_plugins(config: RunConfig, domain: Any = None) -> list[str]:
    """What a run records as its plugins: the config's own (`plugins`, with the --plugin
    modules), then the module that defines each custom part it uses, when that module can be
    imported again (one in a script cannot: `require_parts` names the part when a later command
    needs it).
    `domain`: the run's domain, whose tools an acting student uses unless `agent.tools` says."""
    modules = list(config.plugins)
    registries = _registries()
    tools: list[str] = []
    if config.agent.enabled and not config.agent.tools and domain is not None:
        tools = domain_tools(domain)
    for kind, name in used_parts(config, tools):
        obj = registries[kind].get(name, None)
        if obj is None or _builtin(obj):
            continue
        module = getattr(obj, "__module__", None)
        if _importable(module) and module not in modules:
            modules.append(module)
    graph = config.episodes.graph
    if graph is not None and ":" in graph:
        module = graph.partition(":")[0]
        if _importable(module) and not module.startswith("pedagogy.") and module not in modules:
            modules.append(module)
    return modules


def require_parts(config: RunConfig, where: str, *, graph: bool = True) -> Any:
    """Refuse, in one line, a config that names parts no registry knows (after its plugins were
    imported); `where` is "run RUN" or the config's source. Returns the episode graph factory
    it names (None: the ready-made graph); `graph=False`: the graph is not looked up."""
    from pedagogy.graphs.registry import resolve_graph

    registries = _registries()
    missing = [
        f"{kind} {name!r}"
        for kind, name in used_parts(config)
        if name not in registries[kind] and (graph or kind != "episode graph")
    ]
    if missing:
        after = (
            f" after importing its plugins ({', '.join(config.plugins)})" if config.plugins else ""
        )
        them = "it" if len(missing) == 1 else "them"
        raise ConfigError(
            f"{where} uses {', '.join(missing)}, which no plugin registered{after}; pass "
            f"--plugin MODULE with the module that registers {them}, or install the package "
            f"that provides {them}"
        )
    if not graph or config.episodes.graph is None:
        return None
    try:
        return resolve_graph(config.episodes.graph)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def build_domain_from(config: RunConfig) -> Any:
    """The domain `config.domain` names, built with its options; a wrong option name is one line
    that names the domain and the fix."""
    from pedagogy.domains.registry import build_domain

    try:
        return build_domain(config.domain.name, **config.domain.options)
    except TypeError as err:
        raise ConfigError(
            f"domain.options for {config.domain.name!r}: {err}; fix the option names"
        ) from None
