"""Write docs/schema.md from the SQLAlchemy tables: every table and column, with its type,
nullability, keys and doc, so the schema's documentation cannot drift from the schema.

    python -m pedagogy.memory.schema_doc            # write docs/schema.md
    python -m pedagogy.memory.schema_doc --check    # exit 1 if docs/schema.md is stale

Column docs are the `doc=` of each column in `pedagogy.memory.schema`; table docs are below
(`TABLE_DOCS`). A table or column without one is an error: document it where it is defined.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import Column, DateTime, ForeignKeyConstraint, String, Table
from sqlalchemy import UniqueConstraint as Unique

from pedagogy.errors import ConfigError
from pedagogy.memory import schema

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
"""docs/schema.md of a source checkout (the package's folder `memory/` sits at its top)."""

TABLE_DOCS: dict[str, str] = {
    "runs": "One row per run: its config as run, seed, status and the lease of the process "
    "working on it.",
    "chain_heads": "The end of each run's hash chain (`pedagogy.memory.chain`), written with "
    "every chained row; its row is also the per-run write lock. `pedagogy audit verify` walks "
    "the chain back from here.",
    "snapshots": "Chained copies of the rows that decide or record an outcome (the run's "
    "config and seed, problems, episodes, model versions and each status change, training jobs, "
    "evaluations, curriculum states), written with the row and at each change: `pedagogy audit "
    "verify` compares each row with its last copy.",
    "problems": "Every problem posed, practised or held out, keyed by a hash of its content: "
    "the same problem in two runs is one row.",
    "model_versions": "Every model a run made or started from: the base (number 0) and one per "
    "training job, with its status in the promotion lifecycle.",
    "training_jobs": "Every fine-tuning job: what it trained from, its settings and metrics, "
    "and the version it made.",
    "episodes": "One problem worked through the episode graph: its outcome and the derived "
    "decisions a replay must reproduce. Its turns, verdicts, explanations and tool calls point "
    "here.",
    "turns": "Every model call inside (or outside) an episode: the request as sent, the "
    "response, tokens, latency, cost and errors. On the run's hash chain.",
    "tool_calls": "Every tool call of an acting agent, with the observation it returned "
    "(migration 0005). On the run's hash chain.",
    "call_attempts": "Every attempt of a model call that needed more than one, in order: the "
    "failed ones with their status and error, then the one that served (error NULL); a call "
    "answered at its first attempt has none (migration 0007). On the run's hash chain.",
    "verdicts": "The verifier's verdict on each student answer. On the run's hash chain.",
    "explanations": "Each teacher explanation (or demonstration) a student was shown, its "
    "style and what it cost of the teacher's budget. On the run's hash chain.",
    "curriculum_states": "The curriculum sampler's state after each round (arm values, "
    "probabilities, RNG state), so a resumed run samples as the uninterrupted one would.",
    "dataset_items": "Every training example of a job, with the turn and episode it came from "
    "(the lineage `pedagogy audit model` follows). On the run's hash chain.",
    "evaluations": "Held-out accuracy of a model version on one arm (skill and level), per round.",
    "decisions": "Every decision of a teaching policy (intervention, curriculum, unlock, style, "
    "filter, ...) with the value it was based on (migration 0002). On the run's hash chain.",
}

HEADER = """\
# Database schema

Every table and column of a pedagogy database (SQLite or PostgreSQL), generated from the SQLAlchemy
tables in `memory/schema.py` by `python -m pedagogy.memory.schema_doc`. Do not edit by hand: a test
checks that this file matches the code. The migrations in `memory/migrations/versions` build the
same schema; a test checks that too.

Conventions: ids are caller-chosen strings (uuid hex, content hashes, readable run ids); times are
UTC with a time zone; JSON columns hold JSON objects (`sqlalchemy.JSON`). Rows on a run's hash chain
carry `chain_index` (their position, unique per run across the chained tables) and `hash`.
"""


def type_name(column: Column) -> str:
    """The column's portable type, e.g. `String(128)`, `DateTime (time zone)`, `JSON`."""
    t = column.type
    name = type(t).__name__
    if isinstance(t, String) and getattr(t, "length", None):
        return f"{name}({t.length})"
    if isinstance(t, DateTime) and t.timezone:
        return f"{name} (time zone)"
    return name


def _key(column: Column) -> str:
    parts = []
    if column.primary_key:
        auto = column.autoincrement is True or (
            column.autoincrement == "auto"
            and type_name(column) == "Integer"
            and len(column.table.primary_key.columns) == 1
        )
        parts.append("PK, autoincrement" if auto else "PK")
    for fk in column.foreign_keys:
        parts.append(f"FK → {fk.target_fullname}")
    if column.server_default is not None:
        default = getattr(column.server_default, "arg", None)
        text = getattr(default, "text", None)
        if text is None and default is not None and hasattr(default, "compile"):
            text = str(default.compile())
        parts.append(f"default {text if text is not None else default}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    """One table cell: on one line, with `|` and `<` (read as HTML) escaped."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "\\<")


def _constraints(table: Table) -> list[str]:
    lines = []
    for c in sorted(table.constraints, key=lambda c: str(c.name)):
        cols = ", ".join(col.name for col in c.columns)
        if isinstance(c, Unique):
            lines.append(f"- unique `{c.name}` ({cols})")
        elif isinstance(c, ForeignKeyConstraint) and len(c.columns) > 1:
            lines.append(f"- foreign key `{c.name}` ({cols}) → {c.referred_table.name}")
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        cols = ", ".join(col.name for col in index.columns)
        unique = "unique index" if index.unique else "index"
        lines.append(f"- {unique} `{index.name}` ({cols})")
    return lines


def undocumented() -> list[str]:
    """Tables and columns without a doc, as "table" or "table.column"."""
    missing = [t.name for t in schema.metadata.sorted_tables if not TABLE_DOCS.get(t.name)]
    for table in schema.metadata.sorted_tables:
        missing += [f"{table.name}.{c.name}" for c in table.columns if not c.doc]
    return missing


def render() -> str:
    """docs/schema.md as it should be."""
    missing = undocumented()
    if missing:
        raise ConfigError(
            f"undocumented in memory/schema.py: {', '.join(missing)}; give each column a "
            "doc= (and each table an entry in schema_doc.TABLE_DOCS)"
        )
    tables = list(schema.metadata.tables.values())  # in the order memory/schema.py defines them
    out = [HEADER, "Tables: " + " · ".join(f"[{t.name}](#{t.name})" for t in tables), ""]
    for table in tables:
        out += [f"## {table.name}", "", _cell(TABLE_DOCS[table.name]), ""]
        out += ["| column | type | null | key | description |", "|---|---|---|---|---|"]
        for c in table.columns:
            null = "yes" if c.nullable else "no"
            out.append(
                f"| `{c.name}` | {type_name(c)} | {null} | {_key(c)} | {_cell(c.doc or '')} |"
            )
        constraints = _constraints(table)
        if constraints:
            out += ["", "Constraints and indexes:", "", *constraints]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pedagogy.memory.schema_doc", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "path", nargs="?", type=Path, default=DEFAULT_PATH, help="where to write (docs/schema.md)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file is stale"
    )
    args = parser.parse_args(argv)
    try:
        text = render()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        current = args.path.read_text() if args.path.is_file() else None
        if current != text:
            print(
                f"{args.path} is stale; regenerate it: python -m pedagogy.memory.schema_doc",
                file=sys.stderr,
            )
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
