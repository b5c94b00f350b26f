"""Verify a run's hash chain and say what was done to it (`pedagogy audit verify RUN`).

`verify_run` walks every link of the run (`pedagogy.memory.chain`) in chain order and checks each
against the stored hash of the link before it, so an edited row is reported alone. It then tells
apart what broke, each problem with its table, row and chain index:

- edited: the row's hash does not match its content.
- deleted: no row holds an index below the head's length. The hash of a deleted row cannot be
  inverted, so the row is named only when rows that pointed at it remain (a turn its verdicts,
  explanations or tool calls still refer to). A row still stored at that index but pointed out
  of the run (its run_id, or a dataset item's job, a verdict's or explanation's episode, made
  another run's) is named as edited when the link after it is chained to its hash (or the head
  ends on it).
- inserted: a row that was never linked: it shares another row's index, or lies past the head.
- reordered: the row's hash matches its content at another index (its chain_index was changed).
- rechained-without-key: in a keyed run, the row's hash is a plain SHA-256 of it: the chain was
  re-hashed by someone without the key.
- head-mismatch: `chain_heads` does not end where the links do (length, last hash), or says the
  run has no key while its links are HMACs under the given one.

A link right after a deleted or moved one cannot be checked on its own (its hash covers its
predecessor's); it is counted as unchecked, not reported. Without a key, a writer who re-hashes
the whole chain after an edit goes unnoticed: that is what the key is for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pedagogy.errors import StoreError
from pedagogy.memory.audit_rows import OWNER, Snapshots, check_rows, rows_at
from pedagogy.memory.chain import (
    KEY_ENV,
    LEGACY_TABLES,
    TABLES,
    digest,
    legacy_text,
    link_text,
)
from pedagogy.memory.records import ChainHeadRecord, ChainLinkRecord

if TYPE_CHECKING:
    from pedagogy.memory.base import Store

KINDS = (
    "edited",
    "deleted",
    "inserted",
    "reordered",
    "rechained-without-key",
    "head-mismatch",
    "not-keyed",
)
_SEARCH_LIMIT = 64
"""Broken links beyond which moved rows are not looked for (a search tries every broken position
with every broken link's hash as predecessor)."""
_REFERS_TO_TURNS = ("tool_calls", "verdicts", "explanations", "call_attempts")
"""Tables whose rows point at a turn of the same run (dataset items may use earlier runs')."""


@dataclass
class AuditProblem:
    """One thing wrong with a run's chain."""

    kind: str
    """One of KINDS."""
    table: str
    """The row's table; "chain_heads" for a head-mismatch; "" for a deleted row of unknown table."""
    row_id: str | int | None
    chain_index: int | None
    detail: str

    def line(self) -> str:
        what = f"{self.table} {self.row_id}" if self.table else "a row"
        index = "" if self.chain_index is None else f" #{self.chain_index}"
        return f"{self.kind:<22} {what}{index}: {self.detail}"


@dataclass
class AuditReport:
    """The verdict on one run's chain."""

    run_id: str
    keyed: bool
    """The run's links are HMACs under a secret key (as `chain_heads` records)."""
    with_key: bool
    """A key was given to check them."""
    length: int
    """Links the chain head counts."""
    full_from: int
    """Links before this index are pre-0006 turns and tool calls (SHA-256, no table or index)."""
    tables: dict[str, int] = field(default_factory=dict)
    """Rows found per chained table."""
    problems: list[AuditProblem] = field(default_factory=list)
    unchecked: int = 0
    """Links after a deleted or moved one, which cannot be checked on their own."""
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    @property
    def links(self) -> int:
        return sum(self.tables.values())

    @property
    def hash_name(self) -> str:
        return "HMAC-SHA256" if self.keyed else "SHA-256"

    def counts(self) -> dict[str, int]:
        """Problems per kind, in KINDS order."""
        found = Counter(p.kind for p in self.problems)
        return {k: found[k] for k in KINDS if found[k]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "clean": self.clean,
            "hash": self.hash_name,
            "keyed": self.keyed,
            "with_key": self.with_key,
            "length": self.length,
            "full_from": self.full_from,
            "links": self.links,
            "tables": self.tables,
            "counts": self.counts(),
            "unchecked": self.unchecked,
            "problems": [asdict(p) for p in self.problems],
            "notes": self.notes,
        }


def _keyed_run_error(run_id: str) -> StoreError:
    return StoreError(
        f"run {run_id!r} is chained with a secret key; set {KEY_ENV} to the key it was written "
        "with, then verify again"
    )


def _expected(
    previous: str, link: ChainLinkRecord, index: int, run_id: str, full_from: int, key: bytes | None
) -> str:
    if index < full_from:
        if link.table not in LEGACY_TABLES:
            return ""  # no such link existed before 0006: nothing matches it
        return digest(previous, legacy_text(link.table, link.row, run_id))
    return digest(previous, link_text(link.table, link.row, run_id, index), key)


def chain_breaks(store: Store, run_id: str, key: bytes | None = None) -> list[str]:
    """`Store.verify_chain`: the links whose hash does not match the stored hash before them, plus
    the last turn or tool call when the head does not end there. Turns and tool calls by id,
    other rows as "table:id"."""
    head = store.chain_head(run_id)
    keyed = head is not None and head.keyed
    if keyed and key is None:
        raise _keyed_run_error(run_id)
    full_from = head.full_from if head is not None else 0
    bad: list[str] = []
    previous, count, last = "", 0, None
    for link in store.chain_links(run_id):
        expected = _expected(
            previous, link, link.chain_index, run_id, full_from, key if keyed else None
        )
        name = str(link.id) if link.table in LEGACY_TABLES else f"{link.table}:{link.id}"
        if expected != link.hash:
            bad.append(name)
        previous, count = link.hash, count + 1
        if link.table in LEGACY_TABLES:
            last = name
    if head is not None and last is not None and last not in bad:
        if head.last_hash != previous or head.length != count:
            bad.append(last)
    return bad


class _Walk:
    """One pass over a run's links in chain order, then the classification of what broke."""

    def __init__(self, run_id: str, head: ChainHeadRecord, key: bytes | None):
        self.run_id, self.head, self.key = run_id, head, key
        self.mode = key if head.keyed else None
        """The key the run's links are hashed with (None: plain SHA-256)."""
        self.hashes: dict[int, str] = {}
        """Index -> stored hash of the row accepted at that index."""
        self.failing: dict[int, tuple[ChainLinkRecord, str]] = {}
        """Index -> the accepted row there and how it failed (bad, plain, unchecked)."""
        self.problems: list[AuditProblem] = []
        self.tables: Counter[str] = Counter()
        self.names: dict[int, str] = {}
        """Index -> "table id" of the row accepted there (to name a deleted row's neighbours)."""
        self.beyond = 0
        """Rows past the head that verify: the head stopped short."""
        self.unchecked = 0
        self.verified = 0
        """Links from full_from on that verify where they are."""
        self.stray: list[ChainLinkRecord] = []
        """Rows outside the head's range that do not verify there: moved out, or inserted."""
        self.keyed_links = 0
        self.searched = True
        """Whether moved rows were looked for (not among too many broken links)."""
        self.turn_ids: set[str] = set()
        self.refs: dict[str, int] = {}
        """Turn id -> first index of a row that points at it."""
        self.snaps: Snapshots = {}
        """(table, row id) -> index and content of the row's last snapshot."""
        self.first_run_copy: dict[str, Any] | None = None
        """The content of the run's first snapshot of its runs row (it says whether keyed)."""

    def _check(self, link: ChainLinkRecord, k: int) -> str:
        """ok | plain (a plain hash in a keyed run) | keyed (an HMAC in a run marked unkeyed) |
        bad | unchecked (the link before it is missing)."""
        previous = "" if k == 0 else self.hashes.get(k - 1)
        if previous is None:
            return "unchecked"
        if _expected(previous, link, k, self.run_id, self.head.full_from, self.mode) == link.hash:
            return "ok"
        if k < self.head.full_from:
            return "bad"
        other = None if self.head.keyed else self.key
        if (self.head.keyed or self.key is not None) and _expected(
            previous, link, k, self.run_id, self.head.full_from, other
        ) == link.hash:
            return "plain" if self.head.keyed else "keyed"
        return "bad"

    def add(self, k: int, group: list[ChainLinkRecord]) -> None:
        """The rows that claim index `k` (more than one: all but one were inserted)."""
        for link in group:
            self.tables[link.table] += 1
            if link.table == "turns":
                self.turn_ids.add(str(link.id))
            elif link.table in _REFERS_TO_TURNS:
                self.refs.setdefault(str(link.row["turn_id"]), k)
            elif link.table == "snapshots" and isinstance(link.row["content"], dict):
                subject, content = link.row["subject"], link.row["content"]
                self.snaps[(subject, str(link.row["subject_id"]))] = (k, content)
                if subject == "runs" and self.first_run_copy is None:
                    self.first_run_copy = content
        statuses = [self._check(link, k) for link in group]
        verified = [i for i, s in enumerate(statuses) if s in ("ok", "plain", "keyed")]
        accepted = verified[0] if verified else 0
        self.hashes[k] = group[accepted].hash
        if k >= 0:
            self.names[k] = f"{group[accepted].table} {group[accepted].id}"
        for i, (link, status) in enumerate(zip(group, statuses)):
            if i != accepted:
                first = group[accepted]
                self._report(
                    "inserted", link, f"shares chain index {k} with {first.table} {first.id}"
                )
            elif k < 0 or k >= self.head.length:
                if status == "ok":
                    self.beyond += 1
                else:
                    self.stray.append(link)
            elif status == "keyed":
                self.keyed_links += 1
            elif status == "ok" and k >= self.head.full_from:
                self.verified += 1
            elif status != "ok":
                self.failing[k] = (link, status)

    def _report(self, kind: str, link: ChainLinkRecord, detail: str) -> None:
        self.problems.append(AuditProblem(kind, link.table, link.id, link.chain_index, detail))

    def _place(self, link: ChainLinkRecord, positions: set[int], previous: set[str]) -> int | None:
        """An index at which the row's hash matches its content after one of the candidate
        predecessors (the stored hash before that index, or a broken link's); None if none."""
        for j in sorted(positions):
            if j < self.head.full_from:
                if link.table not in LEGACY_TABLES:
                    continue
                text = legacy_text(link.table, link.row, self.run_id)
                key = None
            else:
                text = link_text(link.table, link.row, self.run_id, j)
                key = self.mode
            before = previous | ({""} if j == 0 else {self.hashes.get(j - 1, "")})
            if any(digest(p, text, key) == link.hash for p in before):
                return j
        return None

    def finish(self) -> list[AuditProblem]:
        head = self.head
        gaps = sorted(k for k in range(head.length) if k not in self.hashes)
        broken = {k: v for k, v in self.failing.items() if v[1] != "plain"}
        for k, (link, _) in sorted(self.failing.items()):
            if k not in broken:
                self._report(
                    "rechained-without-key",
                    link,
                    f"its hash is a plain SHA-256 of it, not an HMAC under {KEY_ENV}",
                )
        positions = set(broken) | set(gaps)
        previous = {link.hash for link, _ in broken.values()} | {x.hash for x in self.stray}
        search = self.searched = len(broken) + len(self.stray) <= _SEARCH_LIMIT
        moved_from: set[int] = set()
        for link in self.stray:
            j = self._place(link, set(gaps), previous) if search else None
            if j is None:
                detail = f"lies outside the chain head's {head.length} links and fits none"
                self._report("inserted", link, detail)
            else:
                moved_from.add(j)
                self._report(
                    "reordered", link, f"its hash fits chain index {j}, not {link.chain_index}"
                )
        for k, (link, status) in sorted(broken.items()):
            j = self._place(link, positions | {k}, previous) if search else None
            if j is not None and j != k:
                moved_from.add(j)
                self._report("reordered", link, f"its hash fits chain index {j}, not {k}")
            elif j == k or status == "unchecked":
                self.unchecked += 1  # intact, after a moved or deleted link
            else:
                vouched = (k + 1 in self.hashes and k + 1 not in self.failing) or (
                    k == head.length - 1 and head.last_hash == link.hash
                )
                self._report(
                    "edited",
                    link,
                    "its content was changed: its hash no longer matches it"
                    if vouched
                    else "its hash matches neither its content nor the links around it "
                    "(edited and re-hashed, or the link before it was re-hashed)",
                )
        gaps = [k for k in gaps if k not in moved_from]  # a moved row left it
        named = self._deleted_turns(gaps)
        for k in gaps:
            table, row_id = named.get(k, ("", None))
            around = [f"#{i} {self.names[i]}" for i in (k - 1, k + 1) if i in self.names]
            detail = f"no row holds chain index {k}" + (
                f" (between {' and '.join(around)})" if around else ""
            )
            if row_id is not None:
                detail += f"; rows still refer to turn {row_id}"
            self.problems.append(AuditProblem("deleted", table, row_id, k, detail))
        self._check_head(gaps)
        order = {kind: i for i, kind in enumerate(KINDS)}
        self.problems.sort(
            key=lambda p: (p.chain_index if p.chain_index is not None else -1, order[p.kind])
        )
        return self.problems

    def vouches(self, link: ChainLinkRecord, k: int) -> str | None:
        """What holds `link`'s stored hash as the run's link at gap `k` (the link after the gap
        is chained to it, or the head ends on it); None if nothing does."""
        if k == self.head.length - 1:
            return "the chain head ends on its hash" if link.hash == self.head.last_hash else None
        after, status = self.failing.get(k + 1, (None, ""))
        if after is None or status != "unchecked":
            return None
        full_from = self.head.full_from
        if _expected(link.hash, after, k + 1, self.run_id, full_from, self.mode) != after.hash:
            return None
        return "the link after it is chained to its hash"

    def _deleted_turns(self, gaps: list[int]) -> dict[int, tuple[str, str]]:
        """Gap index -> ("turns", id) for turns that rows still refer to: each named at the last
        unnamed gap before the first row that refers to it."""
        named: dict[int, tuple[str, str]] = {}
        missing = sorted((k, t) for t, k in self.refs.items() if t not in self.turn_ids)
        for k, turn_id in missing:
            free = [g for g in gaps if g < k and g not in named]
            if free:
                named[free[-1]] = ("turns", turn_id)
        return named

    def _check_head(self, gaps: list[int]) -> None:
        head, problem = self.head, None
        last = self.hashes.get(head.length - 1)
        if self.beyond:
            problem = f"it counts {head.length} links, but {self.beyond} more verify after them"
        elif head.length == 0 and head.last_hash:
            problem = "it counts no links but names a last hash"
        elif last is not None and last != head.last_hash:
            problem = f"its last hash is not the hash of link #{head.length - 1}"
        if problem:
            self.problems.append(
                AuditProblem("head-mismatch", "chain_heads", self.run_id, head.length - 1, problem)
            )
        if self.keyed_links:
            self.problems.append(
                AuditProblem(
                    "head-mismatch",
                    "chain_heads",
                    self.run_id,
                    None,
                    f"it says the run has no key, but {self.keyed_links} links are HMACs under "
                    f"the given {KEY_ENV}",
                )
            )


def verify_run(store: Store, run_id: str, key: bytes | None = None) -> AuditReport:
    """Check every link of the run's chain; `key` is the run's secret key (required when the run
    is keyed). Raises StoreError for an unknown run or a keyed run without a key."""
    head = store.chain_head(run_id)
    problems: list[AuditProblem] = []
    if head is None:
        problems.append(
            AuditProblem("head-mismatch", "chain_heads", run_id, None, "the head row is missing")
        )
        # Without its head, the length is whatever the links reach; a key is taken as used.
        links = list(store.chain_links(run_id))
        length = max((link.chain_index for link in links), default=-1) + 1
        head = ChainHeadRecord(run_id, "", length, keyed=key is not None)
        stream: Any = links
    else:
        stream = store.chain_links(run_id)
    if head.keyed and key is None:
        raise _keyed_run_error(run_id)
    walk = _Walk(run_id, head, key)
    group: list[ChainLinkRecord] = []
    for link in stream:
        if group and link.chain_index != group[0].chain_index:
            walk.add(group[0].chain_index, group)
            group = []
        group.append(link)
    if group:
        walk.add(group[0].chain_index, group)
    problems += walk.finish()
    _name_moved_out(store, walk, problems)
    notes = _check_outcome_rows(store, run_id, walk, problems)
    problems += _check_keyed(run_id, head, walk, key)
    report = AuditReport(
        run_id=run_id,
        keyed=head.keyed,
        with_key=key is not None,
        length=head.length,
        full_from=head.full_from,
        tables={t: walk.tables[t] for t in TABLES},
        problems=problems,
        unchecked=walk.unchecked,
        notes=notes,
    )
    if not walk.searched:
        report.notes.append(
            f"more than {_SEARCH_LIMIT} broken links: moved rows were not told from edited ones"
        )
    if head.keyed and report.links > head.full_from and not walk.verified:
        report.notes.insert(
            0, f"no link verifies under this key: is {KEY_ENV} the key the run was written with?"
        )
    return report


def _name_moved_out(store: Store, walk: _Walk, problems: list[AuditProblem]) -> None:
    """Name the row of a gap that is still stored at its index but no longer with the run's
    links (its run_id, job or episode pointed elsewhere): the link after the gap is chained to
    its hash (or the head ends on it), so it is the run's row there, edited."""
    gaps = {
        p.chain_index: i
        for i, p in enumerate(problems)
        if p.kind == "deleted" and not p.table and p.chain_index is not None
    }
    if not gaps or len(gaps) > _SEARCH_LIMIT:
        return
    for link in rows_at(store, gaps):
        k = link.chain_index
        held = None if problems[gaps[k]].table else walk.vouches(link, k)
        if held is None:
            continue
        column = OWNER.get(link.table, "run_id")
        detail = f"it was moved out of the run: its {column} is now {link.row[column]!r} ({held})"
        problems[gaps[k]] = AuditProblem("edited", link.table, link.id, k, detail)
        if k + 1 in walk.failing:
            walk.unchecked -= 1  # the link after it is checked now: it follows this one


def _check_outcome_rows(
    store: Store, run_id: str, walk: _Walk, problems: list[AuditProblem]
) -> list[str]:
    """Compare the run's snapshotted rows with their last chained copies (`audit_rows`)."""
    if not walk.snaps:
        return [
            "the run's outcome rows (config, problems, episodes, versions, jobs, evaluations, "
            "curriculum) are not on its chain: it was written before migration 0009 and not "
            "chained by it (a keyed run upgraded without its key)"
        ]
    found, notes = check_rows(store.audited_rows(run_id), walk.snaps)  # type: ignore[attr-defined]
    problems += [AuditProblem(*p) for p in found]
    return notes


def _check_keyed(
    run_id: str, head: ChainHeadRecord, walk: _Walk, key: bytes | None
) -> list[AuditProblem]:
    """A run created keyed says so in its first link, under the key; with a key given, a run
    that is not keyed fails: it was written without the key, or re-hashed without it."""
    if head.keyed or walk.keyed_links:
        return []  # keyed, or HMAC links in a run marked unkeyed (`_Walk._check_head`)
    said = walk.first_run_copy.get("keyed") if walk.first_run_copy else None
    if said:
        detail = (
            "the run's first link says it was created keyed, but chain_heads says it is not "
            "(a downgrade)"
        )
        return [AuditProblem("head-mismatch", "chain_heads", run_id, None, detail)]
    if key is not None:
        detail = (
            f"{KEY_ENV} is given, but the chain is not keyed: it was written without the key, "
            "or a keyed run was re-hashed without it (a downgrade); to check it as a run written "
            f"without a key, unset {KEY_ENV}"
        )
        return [AuditProblem("not-keyed", "chain_heads", run_id, None, detail)]
    return []
