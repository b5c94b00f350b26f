"""Anchors: the head of a run's hash chain, written outside the database.

The chain (`pedagogy.memory.chain`) proves that no link was changed *given its head*; the head
lives in the same database. A writer of the database can cut the last links and move the head
back, append links and move it on, or (without `PEDAGOGY_AUDIT_KEY`) re-hash the whole chain:
each verifies clean, because nothing else remembers where the chain ended.

An anchor is that memory. At the end of every round and of the run, the loop appends one JSON
line to `<run folder>/anchors.jsonl` (append, then fsync; never rewritten): the index and hash of
the chain's last link, the chained rows per table up to it, the run, the round, the time and
whether the run is keyed. `check_anchors` then tells, from the stored links alone (no key
needed), whether the chain still holds the anchored link at its index with the same hash and the
same rows per table before it. Links after the last anchor are reported as appends: expected
while a run goes on, tampering once the anchor says the run had finished.

Whoever keeps a copy of the anchors (another machine, an export's recipient) holds the chain to
what it was, even against someone who can rewrite the whole database.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pedagogy.errors import ConfigError, StoreError
from pedagogy.memory.chain import chain_summary

if TYPE_CHECKING:
    from pedagogy.memory.base import Store
    from pedagogy.memory.records import ChainLinkRecord

FILENAME = "anchors.jsonl"
"""The anchors of a run, one JSON line each, in its run folder."""
FORMAT = 1


@dataclass
class Anchor:
    """The chain's head at one moment, as written to `anchors.jsonl`."""

    run_id: str
    round: int
    """The round that just ended (0: before the first)."""
    index: int
    """Chain index of the last link (-1: the chain was empty)."""
    hash: str
    """Hash of that link ("" for an empty chain)."""
    tables: dict[str, int]
    """Chained rows per table at indices 0..index."""
    keyed: bool
    """The links are HMACs under PEDAGOGY_AUDIT_KEY (the key is never written)."""
    finished: bool = False
    """The run ended here: any later link is tampering."""
    at: str = ""
    """When it was written (ISO 8601, UTC)."""
    format: int = FORMAT

    @property
    def length(self) -> int:
        """Links the chain had."""
        return self.index + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Anchor:
        """An anchor from its JSON object; ConfigError naming `where` when it is not one."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where} is not an anchor (a JSON object); {_FIX}")
        missing = [
            k for k in ("run_id", "round", "index", "hash", "tables", "keyed") if k not in data
        ]
        if missing:
            raise ConfigError(f"{where} is not an anchor: it lacks {', '.join(missing)}; {_FIX}")
        tables = data["tables"]
        ok = (
            isinstance(data["run_id"], str)
            and _is_int(data["round"])
            and _is_int(data["index"])
            and data["index"] >= -1
            and isinstance(data["hash"], str)
            and isinstance(data["keyed"], bool)
            and isinstance(tables, dict)
            and all(isinstance(k, str) and _is_int(v) and v >= 0 for k, v in tables.items())
        )
        if not ok or data.get("format", FORMAT) != FORMAT:
            raise ConfigError(f"{where} is not an anchor of format {FORMAT}: {data!r:.200}; {_FIX}")
        return cls(
            run_id=data["run_id"],
            round=data["round"],
            index=data["index"],
            hash=data["hash"],
            tables=dict(tables),
            keyed=data["keyed"],
            finished=bool(data.get("finished", False)),
            at=str(data.get("at", "")),
        )


_FIX = "give the run folder's anchors.jsonl or an export's anchor.json, unedited"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class ChainState:
    """Where a run's chain ends now, and how many rows of each table it links."""

    length: int
    last_hash: str
    keyed: bool
    tables: dict[str, int] = field(default_factory=dict)


def count_keys(link: ChainLinkRecord) -> tuple[str, ...]:
    """What a link is counted under in an anchor's `tables`: its table, and a snapshot of a row
    that is not a link itself also under "snapshots:<the row's table>"."""
    if link.table == "snapshots":
        return link.table, f"snapshots:{link.row.get('subject')}"
    return (link.table,)


def chain_state(store: Store, run_id: str) -> ChainState:
    """The run's chain head and its chained rows per table, from the chain's summary: a few
    counts, so an anchor costs the same at round 1 and round 100. (The counts are the rows
    stored; in a chain no one tampered with, exactly the links below the head.) StoreError for a
    run without a head row."""
    summary = chain_summary(store, run_id)
    tables = {t: n for t, n in sorted(summary.tables.items()) if n}
    return ChainState(summary.index + 1, summary.hash, summary.keyed, tables)


def make_anchor(store: Store, run_id: str, round_: int, finished: bool = False) -> Anchor:
    """The run's chain head now, as an anchor of `round_`."""
    state = chain_state(store, run_id)
    return Anchor(
        run_id=run_id,
        round=round_,
        index=state.length - 1,
        hash=state.last_hash,
        tables=state.tables,
        keyed=state.keyed,
        finished=finished,
        at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def append_anchor(path: Path | str, anchor: Anchor) -> None:
    """Append `anchor` as one line to `path` and make it durable (fsync the file, and its folder
    when the file is new). Earlier lines are never rewritten."""
    path = Path(path)
    line = json.dumps(anchor.to_dict(), sort_keys=True, separators=(",", ":")) + "\n"
    new = not path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write: a reader never sees half a line
            os.fsync(fd)
        finally:
            os.close(fd)
        if new and hasattr(os, "O_DIRECTORY"):
            folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    except OSError as err:
        raise StoreError(
            f"cannot append the chain's anchor to {path}: {err.strerror or err}; free space or "
            "fix the run folder's permissions, then resume the run"
        ) from None


def write_anchor(
    store: Store, run_id: str, run_dir: Path | str, round_: int, finished: bool = False
) -> Anchor:
    """Append the run's chain head now to `<run_dir>/anchors.jsonl`; returns the anchor."""
    anchor = make_anchor(store, run_id, round_, finished)
    append_anchor(Path(run_dir) / FILENAME, anchor)
    return anchor


def read_anchors(path: Path | str) -> list[Anchor]:
    """Every anchor in `path`: an anchors.jsonl (one per line) or one anchor's JSON object.
    ConfigError (exit 2) for a missing, empty or garbled file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"anchor file {path} does not exist; {_FIX}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read anchor file {path}: {err}; {_FIX}") from None
    if not text.strip():
        raise ConfigError(f"anchor file {path} is empty; {_FIX}")
    try:  # a single anchor, possibly indented over several lines
        return [Anchor.from_dict(json.loads(text), str(path))]
    except json.JSONDecodeError:
        pass
    anchors = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} line {n} is not JSON ({err.msg}); {_FIX}") from None
        anchors.append(Anchor.from_dict(data, f"{path} line {n}"))
    return anchors


def latest_anchor(anchors: list[Anchor], run_id: str) -> Anchor | None:
    """The run's anchor with the longest chain (the last written among equals)."""
    mine = [a for a in anchors if a.run_id == run_id]
    return max(reversed(mine), key=lambda a: a.index) if mine else None


def run_anchors(anchors: list[Anchor], run_id: str, where: Path | str) -> list[Anchor]:
    """The anchors of `run_id`, in chain order; ConfigError when there are none."""
    mine = [a for a in anchors if a.run_id == run_id]
    if not mine:
        others = sorted({a.run_id for a in anchors})
        raise ConfigError(
            f"{where} holds no anchor of run {run_id!r} (it anchors {', '.join(others)}); give "
            "the anchors of the run you verify"
        )
    return sorted(mine, key=lambda a: a.index)


@dataclass
class AnchorCheck:
    """The chain held against its anchors (`check_anchors`)."""

    run_id: str
    anchors: int
    """Anchors of the run checked."""
    latest: Anchor
    problems: list[str] = field(default_factory=list)
    """What no longer matches, one line each (empty: every anchor holds)."""
    appended: int = 0
    """Links after the latest anchor."""
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "anchors": self.anchors,
            "latest": self.latest.to_dict(),
            "appended": self.appended,
            "problems": self.problems,
            "notes": self.notes,
        }


def _mismatch(anchor: Anchor, hashes: dict[int, list[str]], counts: Counter[str]) -> str | None:
    """Why the chain no longer holds `anchor` (None: it does). `hashes`: index -> stored hashes;
    `counts`: rows per table at indices 0..anchor.index."""
    name = f"the anchor of round {anchor.round}" + (" (run finished)" if anchor.finished else "")
    if anchor.index >= 0:
        found = hashes.get(anchor.index, [])
        if not found:
            end = max(hashes, default=-1)
            return (
                f"{name} ends at link #{anchor.index}, but no row holds that index (the chain "
                f"now ends at #{end}): links were removed"
            )
        if anchor.hash not in found:
            return (
                f"link #{anchor.index} no longer has the hash {name} recorded: the chain up to it "
                "was rewritten (re-hashed, or cut and re-appended)"
            )
    tables = set(anchor.tables) | set(counts)
    differ = [
        f"{t} {counts.get(t, 0)} (anchored {anchor.tables.get(t, 0)})"
        for t in sorted(tables)
        if counts.get(t, 0) != anchor.tables.get(t, 0)
    ]
    if differ:
        return f"rows per table up to link #{anchor.index} differ from {name}: {', '.join(differ)}"
    return None


def check_anchors(store: Store, run_id: str, anchors: list[Anchor]) -> AnchorCheck:
    """Hold the run's stored chain to its anchors (those of other runs are ignored; ConfigError
    when none is the run's). Reads stored hashes only: no key is needed."""
    mine = run_anchors(anchors, run_id, "the anchors given")
    head = store.chain_head(run_id)
    hashes: dict[int, list[str]] = {}
    per_index: dict[int, Counter[str]] = {}
    for link in store.chain_links(run_id):
        hashes.setdefault(link.chain_index, []).append(link.hash)
        per_index.setdefault(link.chain_index, Counter()).update(count_keys(link))
    latest = mine[-1]
    check = AnchorCheck(run_id, len(mine), latest)
    counts: Counter[str] = Counter()
    done = -1
    for anchor in mine:  # counts accumulate along the chain, anchor after anchor
        for k in sorted(i for i in per_index if done < i <= anchor.index):
            counts.update(per_index[k])
        done = max(done, anchor.index)
        problem = _mismatch(anchor, hashes, counts)
        if problem:
            check.problems.append(problem)
            break  # the later anchors hold the same chain: the first break says where
    if head is not None and head.keyed != latest.keyed:
        was, now = ("keyed", "unkeyed") if latest.keyed else ("unkeyed", "keyed")
        check.problems.append(
            f"the anchor of round {latest.round} says the run was {was}; the database now says "
            f"{now}"
        )
    length = head.length if head is not None else max(hashes, default=-1) + 1
    if length < latest.length and not check.problems:
        check.problems.append(
            f"the chain head counts {length} links; the anchor of round {latest.round} counted "
            f"{latest.length}: the head was moved back"
        )
    check.appended = max(0, length - latest.length)
    if check.appended:
        line = f"{check.appended} links after the anchor of round {latest.round}"
        if latest.finished:
            check.problems.append(f"{line}, which says the run had finished: links were appended")
        else:
            check.notes.append(f"{line} (the run went on after it)")
    return check
