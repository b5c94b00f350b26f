"""Deprecated: the agents benchmark moved to `pedagogy.benchmarks.agents` (and what the
trajectories show to `pedagogy.benchmarks.trajectories`). This module re-exports its old names
for one release; each one read here warns (DeprecationWarning) and names its new home."""

from __future__ import annotations

from pedagogy.moved import moved_names

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
__getattr__, __dir__, __all__ = moved_names("pedagogy.bench_agents", _NEW_HOME, _RENAMED)
