"""docs/schema.md is generated from the SQLAlchemy tables and cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

from pedagogy.memory import schema, schema_doc

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_schema_doc_is_the_generated_one():
    committed = (ROOT / "docs" / "schema.md").read_text()
    assert committed == schema_doc.render(), (
        "docs/schema.md is stale; regenerate it: python -m pedagogy.memory.schema_doc"
    )


def test_every_table_and_column_is_documented_with_type_nullability_and_keys():
    assert schema_doc.undocumented() == []
    text = schema_doc.render()
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    assert set(sections) == set(schema.metadata.tables)
    for table in schema.metadata.tables.values():
        rows = {
            m.group(1): m.group(0)
            for m in re.finditer(r"^\| `(\w+)` \|.*$", sections[table.name], re.M)
        }
        assert list(rows) == [c.name for c in table.columns], table.name
        for c in table.columns:
            cells = [x.strip() for x in re.split(r"(?<!\\)\|", rows[c.name])[1:-1]]
            _, kind, null, key, doc = cells
            assert kind == schema_doc.type_name(c)
            assert null == ("yes" if c.nullable else "no")
            assert ("PK" in key) == c.primary_key
            assert all(f"FK → {fk.target_fullname}" in key for fk in c.foreign_keys)
            assert doc == schema_doc._cell(c.doc)
    turns = sections["turns"]
    assert "- unique `uq_turns_run_id_chain_index` (run_id, chain_index)" in turns
    assert "| `episode_id` | String(128) | yes | FK → episodes.id |" in turns


def test_an_undocumented_column_is_refused_and_check_finds_a_stale_file(
    tmp_path, monkeypatch, capsys
):
    path = tmp_path / "schema.md"
    assert schema_doc.main([str(path)]) == 0
    assert schema_doc.main([str(path), "--check"]) == 0
    path.write_text(path.read_text().replace("The reference answer.", "The answer."))
    assert schema_doc.main([str(path), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    monkeypatch.setattr(schema.problems.c.answer, "doc", None)
    assert schema_doc.undocumented() == ["problems.answer"]
    assert schema_doc.main([str(path)]) == 2
    assert "problems.answer" in capsys.readouterr().err


def test_the_readme_links_the_schema_doc():
    assert "docs/schema.md" in (ROOT / "README.md").read_text()
