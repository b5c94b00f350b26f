"""Lineage: what data made a model, and what the model then did.

Everything is rebuilt from the Store protocol's plain methods, so it works on any store. The graph
runs problem → episode → turn → dataset_item → training_job → model_version → evaluation, plus
turn → tool_call (an acting agent's calls), model_version(parent) → model_version and
model_version(base) → training_job. Node keys are
"<type>:<id>" (evaluations, which have no id, use "evaluation:<version>:<round>:<skill>:<level>");
each node carries `type` and a few fields of its record, each edge a `relation`.

`audit_model` walks a version's parents back to the base model, so "what trained v3" includes the
data of every job that made v1, v2 and v3 — also when a parent belongs to an earlier run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pedagogy.errors import StoreError
from pedagogy.memory.records import (
    EvaluationRecord,
    ModelVersionRecord,
    TrainingJobRecord,
)

if TYPE_CHECKING:
    import networkx as nx

    from pedagogy.memory.base import Store


def _node(kind: str, key: object) -> str:
    return f"{kind}:{key}"


def evaluation_node(e: EvaluationRecord) -> str:
    return _node("evaluation", f"{e.model_version_id}:{e.round}:{e.skill}:{e.level}")


def lineage_graph(store: Store, run_id: str) -> nx.DiGraph:
    """The run's lineage as a directed graph (see the module docstring for its shape)."""
    import networkx as nx

    store.get_run(run_id)  # a clear error for an unknown run
    g = nx.DiGraph(run_id=run_id)
    episodes = store.episodes(run_id, with_turns=True)
    problems = store.get_problems([e.problem_id for e in episodes])
    for p_id, p in problems.items():
        g.add_node(_node("problem", p_id), type="problem", skill=p.skill, level=p.level)
    for e in episodes:
        ep = _node("episode", e.id)
        g.add_node(ep, type="episode", round=e.round, index=e.index, outcome=e.outcome)
        g.add_edge(_node("problem", e.problem_id), ep, relation="posed")
        g.nodes[_node("problem", e.problem_id)].setdefault("type", "problem")
        correct = {v.turn_id: v.correct for v in e.verdicts}
        for t in e.turns:
            tn = _node("turn", t.id)
            g.add_node(tn, type="turn", agent=t.agent, seq=t.seq, correct=correct.get(t.id))
            g.add_edge(ep, tn, relation="turn")
        for c in e.tool_calls:  # an acting agent's calls hang off the turn that made them
            cn = _node("tool_call", c.id)
            g.add_node(cn, type="tool_call", tool=c.tool, step=c.step, ok=c.ok)
            g.add_edge(_node("turn", c.turn_id), cn, relation="called")
    for t in store.turns_outside_episodes(run_id):  # refine and generator calls of the planning
        g.add_node(_node("turn", t.id), type="turn", agent=t.agent, seq=t.seq, outside=True)

    versions = {v.id: v for v in store.model_versions(run_id)}
    for v in versions.values():
        g.add_node(
            _node("model_version", v.id),
            type="model_version",
            role=v.role,
            number=v.number,
            status=v.status,
        )
    for v in versions.values():
        if v.parent_id:
            parent = _node("model_version", v.parent_id)
            g.add_node(parent, type="model_version")  # keeps attributes when already present
            g.add_edge(parent, _node("model_version", v.id), relation="parent")

    for job in store.training_jobs(run_id):
        jn = _node("training_job", job.id)
        g.add_node(jn, type="training_job", kind=job.kind, round=job.round, status=job.status)
        if job.base_version_id:
            g.add_node(_node("model_version", job.base_version_id), type="model_version")
            g.add_edge(_node("model_version", job.base_version_id), jn, relation="base")
        for out in _outputs(job, versions):
            g.add_edge(jn, _node("model_version", out), relation="produced")
        for item in store.dataset_items(job.id):
            dn = _node("dataset_item", item.id)
            g.add_node(dn, type="dataset_item", polarity=item.polarity)
            # Items may reuse turns of earlier runs; those turns appear as bare nodes.
            tn = _node("turn", item.turn_id)
            if tn not in g:
                g.add_node(tn, type="turn", external=True)
            g.add_edge(tn, dn, relation="selected")
            g.add_edge(dn, jn, relation="trained")

    for e in store.evaluations(run_id):
        en = evaluation_node(e)
        g.add_node(en, type="evaluation", skill=e.skill, level=e.level, n=e.n, accuracy=e.accuracy)
        g.add_node(_node("model_version", e.model_version_id), type="model_version")
        g.add_edge(_node("model_version", e.model_version_id), en, relation="evaluated")
    return g


def _outputs(job: TrainingJobRecord, versions: dict[str, ModelVersionRecord]) -> list[str]:
    out = {v.id for v in versions.values() if v.training_job_id == job.id}
    if job.output_version_id:
        out.add(job.output_version_id)
    return sorted(out)


@dataclass
class ModelAudit:
    """What made one model version, and how it did."""

    version: ModelVersionRecord
    chain: list[ModelVersionRecord]
    """This version, its parent, ..., back to the base model (newest first)."""
    training_jobs: list[TrainingJobRecord]
    """The jobs that produced the versions of the chain (newest first)."""
    episode_ids: list[str] = field(default_factory=list)
    """Episodes whose turns trained this version, transitively through its parents."""
    turn_ids: list[str] = field(default_factory=list)
    """Turns whose responses trained it: in those episodes, and for an LLM generator the
    teacher's refine turns (outside episodes)."""
    items_by_polarity: dict[str, int] = field(default_factory=dict)
    """Dataset items of all those jobs, counted by polarity (positive / negative)."""
    evaluations: list[EvaluationRecord] = field(default_factory=list)
    """Evaluations of this version."""

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ids)

    @property
    def n_turns(self) -> int:
        return len(self.turn_ids)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (datetimes as ISO strings)."""

        def plain(obj: Any) -> Any:
            d = asdict(obj)
            for k, val in d.items():
                if isinstance(val, datetime):
                    d[k] = val.isoformat()
            return d

        return {
            "version": plain(self.version),
            "chain": [v.id for v in self.chain],
            "training_jobs": [plain(j) for j in self.training_jobs],
            "n_episodes": self.n_episodes,
            "n_turns": self.n_turns,
            "episode_ids": self.episode_ids,
            "turn_ids": self.turn_ids,
            "items_by_polarity": self.items_by_polarity,
            "evaluations": [dict(plain(e), accuracy=e.accuracy) for e in self.evaluations],
        }


def audit_model(store: Store, version_id: str) -> ModelAudit:
    """Lineage of one model version: its ancestry, the jobs and the data that trained it."""
    version = store.get_model_version(version_id)
    chain = [version]
    while chain[-1].parent_id:
        parent = store.get_model_version(chain[-1].parent_id)
        if any(v.id == parent.id for v in chain):
            raise StoreError(
                f"model version {parent.id!r} is its own ancestor; fix its parent_id in the database"
            )
        chain.append(parent)

    jobs_by_run: dict[str, list[TrainingJobRecord]] = {}
    jobs: list[TrainingJobRecord] = []
    for v in chain:
        if v.run_id not in jobs_by_run:
            jobs_by_run[v.run_id] = store.training_jobs(v.run_id)
        made = [
            j
            for j in jobs_by_run[v.run_id]
            if j.id == v.training_job_id or j.output_version_id == v.id
        ]
        jobs += [j for j in made if all(j.id != k.id for k in jobs)]

    episodes: dict[str, None] = {}
    turns: dict[str, None] = {}
    polarity: Counter[str] = Counter()
    for job in jobs:
        for item in store.dataset_items(job.id):
            if item.episode_id is not None:  # None: a turn outside episodes (generator data)
                episodes.setdefault(item.episode_id)
            turns.setdefault(item.turn_id)
            polarity[item.polarity] += 1
    evaluations = [e for e in store.evaluations(version.run_id) if e.model_version_id == version.id]
    return ModelAudit(
        version=version,
        chain=chain,
        training_jobs=jobs,
        episode_ids=sorted(episodes),
        turn_ids=sorted(turns),
        items_by_polarity=dict(sorted(polarity.items())),
        evaluations=evaluations,
    )
