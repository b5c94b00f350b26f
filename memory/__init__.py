"""pedagogy.memory: what happened, in SQL.

`open_store(url)` gives a `Store` (SQLite file or PostgreSQL) that records runs, problems, episodes
with their hash-chained turns and tool calls, policy decisions, curriculum states, training jobs,
model versions and evaluations.
`lineage_graph` / `audit_model` answer "what data made this model"; `export_run` writes chat-format
training data; `verify_run` says whether a run's hash chain was tampered with, and how. The lineage
and export helpers import networkx / datasets, so they load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pedagogy.memory.base import Store
from pedagogy.memory.records import (
    CallAttemptRecord,
    CurriculumStateRecord,
    DatasetItemRecord,
    DecisionRecord,
    EpisodeRecord,
    EvaluationRecord,
    ExplanationRecord,
    ModelVersionRecord,
    RunRecord,
    ToolCallRecord,
    TrainingJobRecord,
    Trajectory,
    TrajectoryStep,
    TurnRecord,
    VerdictRecord,
)
from pedagogy.memory.store import SQLStore, mask_url, open_store

if TYPE_CHECKING:
    from pedagogy.memory.audit import AuditReport, verify_run
    from pedagogy.memory.export import export_run
    from pedagogy.memory.lineage import ModelAudit, audit_model, lineage_graph

_LAZY = {
    "lineage_graph": "pedagogy.memory.lineage",
    "audit_model": "pedagogy.memory.lineage",
    "ModelAudit": "pedagogy.memory.lineage",
    "export_run": "pedagogy.memory.export",
    "verify_run": "pedagogy.memory.audit",
    "AuditReport": "pedagogy.memory.audit",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pedagogy.memory' has no attribute {name!r}")


__all__ = [
    "AuditReport",
    "CallAttemptRecord",
    "CurriculumStateRecord",
    "DatasetItemRecord",
    "DecisionRecord",
    "EpisodeRecord",
    "EvaluationRecord",
    "ExplanationRecord",
    "ModelAudit",
    "ModelVersionRecord",
    "RunRecord",
    "SQLStore",
    "Store",
    "ToolCallRecord",
    "TrainingJobRecord",
    "Trajectory",
    "TrajectoryStep",
    "TurnRecord",
    "VerdictRecord",
    "audit_model",
    "export_run",
    "lineage_graph",
    "mask_url",
    "open_store",
    "verify_run",
]
