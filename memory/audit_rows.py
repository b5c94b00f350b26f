"""Compare the rows chained as snapshots (runs, problems, episodes, model versions, training jobs,
evaluations, curriculum states) with their last chained copy, and a model version's files with
their chained sha256 (`pedagogy.memory.audit.verify_run` calls it after walking the chain).

A row whose audited fields differ from its last snapshot is "edited", naming the fields; a row
with no snapshot is "inserted"; a snapshot whose row is gone is "deleted". A model version's
folder that is not there (a moved run folder, weights deleted to save space) is a note, not a
problem: its files cannot be checked, which is not the same as having been changed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select

from pedagogy.memory.chain import (
    SNAPSHOT_TABLES,
    TABLES,
    audited_columns,
    row_content,
    same_value,
    weight_files,
)
from pedagogy.memory.records import ChainLinkRecord

Snapshots = dict[tuple[str, str], tuple[int, dict[str, Any]]]
"""(table, row id) -> (chain index, content) of the row's last snapshot."""


def describe(table: str, row: dict[str, Any]) -> str:
    """A row's natural key in words: "round 3, chain_sum@2, version v1"."""
    get = row.get
    if table == "evaluations":
        return f"round {get('round')}, {get('skill')}@{get('level')}, version {get('model_version_id')}"
    if table == "episodes":
        return f"round {get('round')}, index {get('index')}, {get('arm')}"
    if table == "model_versions":
        return f"{get('role')} v{get('number')}"
    if table == "training_jobs":
        return f"round {get('round')}, {get('role')}, attempt {get('attempt')}"
    if table == "curriculum_states":
        return f"round {get('round')}"
    if table == "problems":
        return f"{get('skill')}@{get('level')}"
    return "the run"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_rows(
    rows: dict[str, list[dict[str, Any]]], snaps: Snapshots
) -> tuple[list[tuple[str, str, Any, int | None, str]], list[str]]:
    """Problems (kind, table, row id, chain index, detail) and notes from comparing `rows` (per
    table, as stored) with their last snapshots."""
    problems: list[tuple[str, str, Any, int | None, str]] = []
    notes: list[str] = []
    for table in SNAPSHOT_TABLES:
        now = {str(r["id"]): r for r in rows.get(table, [])}
        for sid, row in now.items():
            what = describe(table, row)
            last = snaps.get((table, sid))
            if last is None:
                detail = f"({what}) is not on the chain: no snapshot of it was written"
                problems.append(("inserted", table, row["id"], None, detail))
                continue
            index, chained = last
            current = row_content(table, row)
            changed = [
                c for c in audited_columns(table) if not same_value(current[c], chained.get(c))
            ]
            if changed:
                parts = [
                    f"{c} (chained {_shown(chained.get(c))}, stored {_shown(current[c])})"
                    for c in changed
                ]
                field = "field" if len(changed) == 1 else "fields"
                detail = f"({what}) {field} {', '.join(parts)} changed"
                problems.append(("edited", table, row["id"], index, detail))
            if table == "model_versions" and chained.get("files"):
                _check_files(row, index, chained["files"], problems, notes)
        for (subject, sid), (index, chained) in snaps.items():
            if subject == table and sid not in now:
                detail = f"({describe(table, chained)}) was chained, but its row is gone"
                problems.append(("deleted", table, chained.get("id", sid), index, detail))
    return problems, notes


def _check_files(
    row: dict[str, Any],
    index: int,
    chained: dict[str, str],
    problems: list[tuple[str, str, Any, int | None, str]],
    notes: list[str],
) -> None:
    found = weight_files(row["path"])
    if found is None:
        notes.append(
            f"model version {row['id']}: its folder {row['path']} is missing (a moved run "
            f"folder?): its {len(chained)} chained file hashes were not checked"
        )
        return
    for name in sorted(set(chained) | set(found)):
        if name not in found:
            change = "is missing"
        elif name not in chained:
            change = "was added: it is not on the chain"
        elif found[name] != chained[name]:
            change = "was replaced: its sha256 is not the chained one"
        else:
            continue
        detail = f"({row['role']} v{row['number']}) weight file {name} {change}"
        problems.append(("edited", "model_versions", row["id"], index, detail))


OWNER = {"verdicts": "episode_id", "explanations": "episode_id", "dataset_items": "job_id"}
"""The column that makes a chained row one of its run's links (`Store.chain_links`): its episode's
run, its job's run, or else its own run_id."""


def rows_at(store: Any, indices: Collection[int]) -> list[ChainLinkRecord]:
    """The rows of the chained tables, of any run, at one of chain `indices`: where a row that left
    its run's links (its run_id, job or episode changed) still lies. Read from the store's engine
    (`SQLStore._engine`); none from another `Store`."""
    engine = getattr(store, "_engine", None)
    if engine is None or not indices:
        return []
    from pedagogy.memory import schema

    found = []
    with engine.connect() as conn:
        for name in TABLES:
            table = schema.metadata.tables[name]
            query = select(table).where(table.c.chain_index.in_(sorted(indices)))
            for r in conn.execute(query.order_by(table.c.id)):
                row = dict(r._mapping)
                index = row.pop("chain_index")
                found.append(ChainLinkRecord(name, row["id"], index, row.pop("hash"), row))
    return found
