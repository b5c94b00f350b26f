"""How a run's rows are hash-chained, so that `pedagogy.memory.audit.verify_run` can tell what changed.

Every row a run writes to turns, tool_calls, verdicts, explanations, decisions, dataset_items and
call_attempts (migration 0007) is a link of the run's one chain, in write order: `chain_index` is
its position and `hash` is H(previous link's hash + canonical JSON of its content). The content is every column but the hash,
plus the table name, the chain index and the run id, so a row cannot be edited, moved, re-labelled
as another table's or moved to another run without breaking its link.

H is HMAC-SHA256 keyed by the PEDAGOGY_AUDIT_KEY environment variable when the run was created
with it set, else SHA-256. Without a key the chain catches edits by anyone who does not re-hash it
afterwards; with one it also catches a writer of the database, who cannot compute a link without
the key. The run records only *whether* a key was used (`chain_heads.keyed`): never the key, nor
anything derived from it (a fingerprint would let anyone test guesses of a weak key offline).

Links written before migration 0006 (`chain_index < chain_heads.full_from`) are turns and tool
calls hashed the earlier way ("format 1"): SHA-256 over their content without table and index.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timezone
from functools import cache
from hashlib import sha256
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from pedagogy.errors import StoreError

KEY_ENV = "PEDAGOGY_AUDIT_KEY"
TABLES = (
    "turns",
    "tool_calls",
    "verdicts",
    "explanations",
    "decisions",
    "dataset_items",
    "call_attempts",
    "snapshots",
)
"""The chained tables, in the order `chain_links` lists links of one index (only an inserted
row shares an index)."""
SNAPSHOT_TABLES = (
    "runs",
    "problems",
    "episodes",
    "model_versions",
    "training_jobs",
    "evaluations",
    "curriculum_states",
)
"""Tables whose rows are chained as snapshots (migration 0009): a `snapshots` link holds the row's
content when it is written and again at each change (a version's status, a job's end, a
curriculum state saved again), so `audit verify` compares each row with its last snapshot and
names the field that changed."""
UNAUDITED = {"runs": ("status", "error", "finished_at", "lease_holder", "lease_heartbeat")}
"""Columns a snapshot leaves out: the run's lifecycle and lease change as it is resumed, and
decide nothing about its outcome."""
LEGACY_TABLES = ("turns", "tool_calls")
"""The tables of the chain before migration 0006."""


def audit_key() -> bytes | None:
    """The secret chain key from PEDAGOGY_AUDIT_KEY (None when unset or empty)."""
    value = os.environ.get(KEY_ENV)
    return value.encode() if value else None


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""One encoder for every link: `json.dumps` with these options builds a new one per call."""

_C_ENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None,  # no circular check: a cycle recurses until RecursionError (`_encode`)
        _CANONICAL.default,
        encode_basestring,  # ensure_ascii=False
        None,
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )
)
"""The C encoder `_CANONICAL.encode` builds on each call (`JSONEncoder.iterencode`, one shot),
built once: the same text without the per-call setup and circular-reference bookkeeping."""


def _encode(value: Any) -> str:
    """`_CANONICAL.encode(value)`, the same text."""
    if _C_ENCODE is None or not isinstance(value, dict):
        return _CANONICAL.encode(value)
    try:
        return "".join(_C_ENCODE(value, 0))
    except RecursionError:
        return _CANONICAL.encode(value)  # a cycle: raises its ValueError as before


def canonical(content: Mapping[str, Any], what: str) -> str:
    try:
        return _encode(content)
    except (TypeError, ValueError) as exc:
        raise _not_json(what, exc) from exc


def _not_json(what: str, exc: Exception) -> StoreError:
    return StoreError(
        f"{what} holds a value that is not JSON-serialisable ({exc}); store plain dicts, "
        "lists, strings and numbers (ChatRequest.to_record())"
    )


def _float(value: Any) -> float | None:
    # 0 and 0.0 (what the database gives back) must hash alike.
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _turn(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    content = {
        "id": r["id"],
        "episode_id": r["episode_id"],
        "run_id": run_id,
        "seq": int(r["seq"]),
        "agent": r["agent"],
        "backend": r["backend"],
        "model": r["model"],
        "model_version": r["model_version"],
        "request": r["request"],
        "response": r["response"],
        "prompt_tokens": int(r["prompt_tokens"]),
        "completion_tokens": int(r["completion_tokens"]),
        "latency_s": float(r["latency_s"]),
        "cost": _float(r["cost"]),
        "seed": _int(r["seed"]),
        "error": r["error"],
    }
    if r.get("detail"):  # only acting turns have one: other turns hash as before migration 0005
        content["detail"] = r["detail"]
    return content


def _utc(value: Any) -> str | None:
    # SQLite gives back a naive UTC datetime, PostgreSQL an aware one: hash both alike.
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat()


def _call_attempt(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "run_id": run_id,
        "turn_id": r["turn_id"],
        "n": int(r["n"]),
        "endpoint": r["endpoint"],
        "status": _int(r["status"]),
        "error": r["error"],
        "latency_s": float(r["latency_s"]),
        "retry_after_s": _float(r["retry_after_s"]),
        "created_at": _utc(r["created_at"]),
    }


def _tool_call(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "run_id": run_id,
        "episode_id": r["episode_id"],
        "turn_id": r["turn_id"],
        "step": int(r["step"]),
        "tool": r["tool"],
        "call_id": r["call_id"],
        "arguments": r["arguments"],
        "observation": r["observation"],
        "ok": bool(r["ok"]),
        "error": r["error"],
        "latency_s": float(r["latency_s"]),
        "truncated": bool(r["truncated"]),
        "detail": r["detail"],
    }


def _verdict(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "id": int(r["id"]),
        "run_id": run_id,
        "episode_id": r["episode_id"],
        "turn_id": r["turn_id"],
        "correct": bool(r["correct"]),
        "score": float(r["score"]),
        "parsed_answer": r["parsed_answer"],
        "verifier": r["verifier"],
        "detail": r["detail"],
    }


def _explanation(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "id": int(r["id"]),
        "run_id": run_id,
        "episode_id": r["episode_id"],
        "turn_id": r["turn_id"],
        "style": r["style"],
        "budget_spent": float(r["budget_spent"]),
        "utility": _float(r["utility"]),
    }


def _decision(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "id": int(r["id"]),
        "run_id": run_id,
        "round": int(r["round"]),
        "kind": r["kind"],
        "policy": r["policy"],
        "subject": r["subject"],
        "chosen": _bool(r["chosen"]),
        "value": _float(r["value"]),
        "detail": r["detail"],
        "episode_id": r["episode_id"],
    }


def _dataset_item(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "id": int(r["id"]),
        "run_id": run_id,
        "job_id": r["job_id"],
        "episode_id": r["episode_id"],
        "turn_id": r["turn_id"],
        "polarity": r["polarity"],
        "prompt": r["prompt"],
        "completion": r["completion"],
    }


def _snapshot(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "id": int(r["id"]),
        "run_id": run_id,
        "subject": r["subject"],
        "subject_id": r["subject_id"],
        "content": r["content"],
    }


_CONTENT: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "turns": _turn,
    "tool_calls": _tool_call,
    "verdicts": _verdict,
    "explanations": _explanation,
    "decisions": _decision,
    "dataset_items": _dataset_item,
    "call_attempts": _call_attempt,
    "snapshots": _snapshot,
}


def content(table: str, row: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The hashed fields of a row of `table` (its columns, normalised; no hash, no index)."""
    return _CONTENT[table](row, run_id)


def link_text(table: str, row: Mapping[str, Any], run_id: str, index: int) -> str:
    """What a format-2 link hashes after the previous hash: the row's content with its table,
    run and chain index, as canonical JSON."""
    body = _CONTENT[table](row, run_id)  # a new dict: ours to extend
    body["table"] = table
    body["chain_index"] = int(index)
    snapshot = body.get("content")
    try:
        if type(snapshot) is Encoded:
            # The same text as encoding the whole body: its keys sorted, "chain_index" first,
            # "content" second, the rest after; the content's own text made once.
            del body["chain_index"], body["content"]
            rest = _encode(body)
            return f'{{"chain_index":{int(index)},"content":{snapshot.text},{rest[1:]}'
        return _encode(body)
    except (TypeError, ValueError) as exc:  # the message is built only when it is needed
        raise _not_json(f"{table} row {row['id']!r}", exc) from exc


class Encoded(dict):  # type: ignore[type-arg]
    """A snapshot's content with its canonical JSON text, made once: its link's hash takes the
    text as is (`link_text`), and so does the stored column on SQLite (`json_text`, the engine's
    JSON serializer) instead of encoding the content twice more."""

    __slots__ = ("text",)

    def __init__(self, content: dict[str, Any], what: str) -> None:
        super().__init__(content)
        self.text = canonical(content, what)

    @classmethod
    def of_row(cls, content: dict[str, Any], subject: str, subject_id: str) -> Encoded:
        """`Encoded(content, f"{subject} row {subject_id!r}")`, the message made only for an
        error (a snapshot per episode is taken on the loop's hot path)."""
        value = cls.__new__(cls)
        dict.update(value, content)
        try:
            value.text = _encode(content)
        except (TypeError, ValueError) as exc:
            raise _not_json(f"{subject} row {subject_id!r}", exc) from exc
        return value


def json_text(value: Any) -> str:
    """JSON for a JSON column: an `Encoded` value's text, anything else as `json.dumps` (what
    SQLAlchemy uses without a serializer)."""
    if type(value) is Encoded:
        return value.text
    return json.dumps(value)


def digest(previous: str, text: str, key: bytes | None = None) -> str:
    """H(previous + text): HMAC-SHA256 under `key`, or SHA-256 without one."""
    data = (previous + text).encode()
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def link_hash(
    previous: str,
    table: str,
    row: Mapping[str, Any],
    run_id: str,
    index: int,
    key: bytes | None = None,
) -> str:
    """The hash of `row` as link `index` of the run's chain after `previous` (format 2)."""
    return digest(previous, link_text(table, row, run_id, index), key)


def legacy_hash(previous: str, table: str, row: Mapping[str, Any], run_id: str) -> str:
    """The hash of a turn or tool call written before migration 0006 (format 1)."""
    if table not in LEGACY_TABLES:
        return ""  # no such link existed: nothing matches it
    return digest(previous, legacy_text(table, row, run_id))


def legacy_text(table: str, row: Mapping[str, Any], run_id: str) -> str:
    """What a format-1 link hashes after the previous hash (no table, no index)."""
    return canonical(content(table, row, run_id), f"{table} row {row['id']!r}")


@dataclass
class ChainWriter:
    """The end of one run's chain while a transaction appends to it (under the head's lock)."""

    run_id: str
    last: str
    """Hash of the last link."""
    length: int
    """Number of links: the next link's index."""
    key: bytes | None
    """The secret key when the run is keyed."""

    def link(self, table: str, row: dict[str, Any]) -> str:
        """Make `row` (its column values) the next link: set its chain_index and hash."""
        row["chain_index"] = index = self.length
        data = (self.last + link_text(table, row, self.run_id, index)).encode()
        if self.key is None:  # `digest`, without its call
            self.last = sha256(data).hexdigest()
        else:
            self.last = hmac.new(self.key, data, sha256).hexdigest()
        row["hash"] = self.last
        self.length = index + 1
        return self.last


# --- snapshots of rows that are not links themselves (migration 0009) ----------------------------


def _normaliser(column: Any) -> Callable[[Any], Any] | None:
    kind = type(column.type).__name__
    if kind in ("Integer", "BigInteger"):
        return _int
    if kind == "Float":
        return _float
    if kind == "Boolean":
        return _bool
    if kind == "DateTime":
        return _utc
    return None


@cache
def _columns(table: str) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """The audited columns of `table` with their normaliser (None: the value as it is)."""
    from pedagogy.memory import schema

    skip = UNAUDITED.get(table, ())
    return tuple(
        (c.name, _normaliser(c))
        for c in schema.metadata.tables[table].columns
        if c.name not in skip
    )


@cache
def _content_plan(
    table: str,
) -> tuple[tuple[str, ...], tuple[tuple[str, Callable[[Any], Any]], ...]]:
    # The columns kept as they are, then those normalised: no call per plain column, as a
    # snapshot per episode is taken on the loop's hot path.
    columns = _columns(table)
    plain = tuple(name for name, norm in columns if norm is None)
    normed = tuple((name, norm) for name, norm in columns if norm is not None)
    return plain, normed


def row_content(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The audited columns of a row of one of SNAPSHOT_TABLES, normalised as `content` does (a
    column the row leaves out is None)."""
    plain, normed = _content_plan(table)
    get = row.get
    content = {name: get(name) for name in plain}
    for name, norm in normed:
        content[name] = norm(get(name))
    return content


def audited_columns(table: str) -> tuple[str, ...]:
    """The columns of a SNAPSHOT_TABLES table that its snapshots hold."""
    return tuple(name for name, _ in _columns(table))


def same_value(a: Any, b: Any) -> bool:
    """Whether two column values are equal as the chain sees them (canonical JSON)."""
    return _CANONICAL.encode(a) == _CANONICAL.encode(b)


def weight_files(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """sha256 of each file under a model version's folder, by path relative to it; None when the
    path is not a folder (a hub id, or a folder moved away)."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    hashes = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest_ = hashlib.sha256()
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest_.update(block)
        hashes[file.relative_to(folder).as_posix()] = digest_.hexdigest()
    return hashes


@dataclass
class ChainSummary:
    """Where a run's chain ends and what it holds: what an anchor written outside the database
    records, so that a re-hashed or truncated chain can be told from it."""

    run_id: str
    index: int
    """Index of the last link (-1: no link yet)."""
    hash: str
    """Hash of the last link ("" when none)."""
    keyed: bool
    tables: dict[str, int]
    """Chained rows per table (TABLES), and per snapshotted table as "snapshots:<table>"."""


def chain_summary(store: Any, run_id: str) -> ChainSummary:
    """The run's chain head (index and hash of its last link) and its chained rows per table, as
    stored (`audit verify` says whether they verify). Raises StoreError for an unknown run or a
    run without a head row."""
    head = store.chain_head(run_id)
    if head is None:
        raise StoreError(
            f"run {run_id!r} has no chain head row; `pedagogy audit verify {run_id}` says what "
            "else is missing"
        )
    return ChainSummary(
        run_id, head.length - 1, head.last_hash, head.keyed, store.chain_counts(run_id)
    )
