"""Deprecated: the learning benchmark moved to `pedagogy.benchmarks` (`learning`, `core`,
`stats`, `arms`). This module re-exports its old names for one release; each one read here
warns (DeprecationWarning) and names its new home."""

from __future__ import annotations

from pedagogy.moved import moved_names

_NEW_HOME = {
    "pedagogy.benchmarks.learning": [
        "ARMS",
        "ARM_SPECS",
        "DEFAULT_ARMS",
        "MECHANISMS",
        "PEDAGOGY",
        "QUICK_ARMS",
        "QUICK_LEVELS",
        "QUICK_PREREQUISITES",
        "SKILL_GRAPH",
        "STANDARD_KD",
        "TARGET_POINTS",
        "BenchSettings",
        "arm_config",
        "parse_arms",
        "table_rows",
        "target_lines",
    ],
    "pedagogy.benchmarks.arms": ["BUDGET_SHARE", "nest"],
    "pedagogy.benchmarks.core": [
        "aggregate",
        "format_record",
        "level_label",
        "plot_arms",
        "plot_bench",
        "run_one",
    ],
    "pedagogy.benchmarks.stats": [
        "Paired",
        "format_paired",
        "levels_mean",
        "mean_heldout",
        "mean_std",
        "paired_differences",
        "paired_interval",
        "paired_summary",
        "t_quantile",
        "verdict",
    ],
}
_RENAMED = {
    # old name: (module, new name)
    "Bench": ("pedagogy.benchmarks.learning", "LearningBench"),
    "_level_key": ("pedagogy.benchmarks.stats", "level_key"),
    "_paired_of": ("pedagogy.benchmarks.stats", "paired_of"),
    "_mean": ("pedagogy.benchmarks.stats", "mean"),
    "_levels": ("pedagogy.benchmarks.core", "levels_of"),
    "_as_json": ("pedagogy.benchmarks.core", "as_json"),
}
__getattr__, __dir__, __all__ = moved_names("pedagogy.bench", _NEW_HOME, _RENAMED)
