"""Every bad input: one line naming the problem and the fix, exit 2, no traceback, nothing half-written."""

import json

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.memory.store import open_store

runner = CliRunner()


def _run(args):
    result = runner.invoke(app, args)
    text = result.output  # stdout and stderr together
    assert "Traceback" not in text
    return result.exit_code, text


def _nothing_written(tmp_path):
    """A run that failed before its first row leaves neither its database nor its folder."""
    return not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"domain": {"name": "nosuch", "options": {}}}, "unknown domain 'nosuch'"),
        ({"teacher": {"kind": "gpt5000"}}, "unknown backend 'gpt5000'"),
        (
            {"domain": {"name": "reasoning_gym", "options": {"skills": ["no_such_task"]}}},
            "no_such_task",
        ),
        (
            {
                "teacher": {
                    "kind": "litellm",
                    "model": "openai/x",
                    "api_base": "http://127.0.0.1:9/v1",
                }
            },
            "127.0.0.1:9",
        ),
    ],
)
def test_bad_names_and_endpoints(quick_config, tmp_path, overrides, match):
    cfg = quick_config(**overrides)
    code, text = _run(["run", "--config", str(cfg), "--quiet"])
    assert code == 2, text
    assert match in text
    assert _nothing_written(tmp_path)


def test_corrupt_model_directory(quick_config, tmp_path):
    bad = tmp_path / "badmodel"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    cfg = quick_config(student={"kind": "transformers", "model": str(bad)})
    code, text = _run(["run", "--config", str(cfg), "--quiet"])
    assert code == 2 and "badmodel" in text, text
    assert _nothing_written(tmp_path)


def test_malformed_config_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("rounds: [oops\n")
    code, text = _run(["run", "--config", str(p)])
    assert code == 2 and "not valid YAML" in text
    assert len(text.strip().splitlines()) == 1


def test_unreachable_database():
    code, text = _run(["run", "--db", "postgresql+psycopg://u:secret@127.0.0.1:1/x", "--quiet"])
    assert code == 2 and "127.0.0.1:1" in text and "secret" not in text


def test_unknown_run(tmp_path):
    db = str(tmp_path / "x.db")
    open_store(db).close()
    code, text = _run(["show", "nope", "--db", db])
    assert code == 2 and "pedagogy runs" in text
    code, text = _run(["runs", "--db", db, "--json"])
    assert code == 0 and json.loads(text) == []


def test_unknown_database(tmp_path):
    code, text = _run(["show", "nope", "--db", str(tmp_path / "x.db")])
    assert code == 2 and "no database at" in text and "--db" in text
    assert list(tmp_path.iterdir()) == []


def test_init_writes_a_loadable_config(tmp_path):
    from pedagogy.config import load_config

    p = tmp_path / "p.yaml"
    code, text = _run(["init", str(p)])
    assert code == 0 and load_config(p).rounds >= 1
    code, text = _run(["init", str(p)])
    assert code == 2 and "--force" in text
