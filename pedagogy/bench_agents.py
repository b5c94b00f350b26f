"""Deprecated: the agents benchmark moved to `pedagogy.benchmarks.agents` (and what the
trajectories show to `pedagogy.benchmarks.trajectories`). This module re-exports its old names
for one release; each one read here warns (DeprecationWarning) and names its new home."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_NEW_HOME = {
    "pedagogy.benchmarks.agents": [
        "ARMS",
        "ARM_SPECS",
        "BASELINE",
        "COMMON",
        "DEFAULT_ARMS",
        "DOMAINS",
        "FTP_NOTE",
        "AgentBench",
        "AgentBenchSettings",
        "BenchDomain",
        "arm_config",
        "by_domain",
        "domain_overrides",
        "hard_levels",
        "parse_names",
        "plot_agents",
        "run_key",
        "sag_lines",
        "split_key",
        "summarise",
        "table_rows",
        "target_lines",
    ],
    "pedagogy.benchmarks.trajectories": ["agent_stats", "trajectory_lines", "trajectory_stats"],
}
_RENAMED = {
    # old name: (module, new name)
    "_mean_metrics": ("pedagogy.benchmarks.trajectories", "mean_metrics"),
    "_mean_trajectories": ("pedagogy.benchmarks.trajectories", "mean_trajectories"),
}
_WHERE = {
    **{name: (module, name) for module, names in _NEW_HOME.items() for name in names},
    **_RENAMED,
}

__all__ = sorted(n for n in _WHERE if not n.startswith("_"))


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'pedagogy.bench_agents' has no attribute {name!r}")
    module, new = where
    import warnings

    warnings.warn(
        f"pedagogy.bench_agents.{name} is deprecated; use {module}.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(import_module(module), new)


def __dir__() -> list[str]:
    return __all__
