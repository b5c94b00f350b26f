"""Paper cuts a new user hit, each through the real CLI: an error is one line on stderr naming
the fix, exit 2, and nothing is written; the hints printed after a run name its id and its --db.

One tiny run (1 round of 4 episodes, no fine-tuning) serves the tests that need a finished run.
"""

import json
import warnings
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.memory.store import open_store

runner = CliRunner()

TINY = {
    "name": "paper-cuts",
    "rounds": 1,
    "domain": {
        "name": "reasoning_gym",
        "options": {
            "skills": ["chain_sum"],
            "compact": True,
            "levels": {"chain_sum": [{"num_terms": 0, "num_digits": 0}]},
        },
    },
    "student": {"options": {"tiny": {}}},
    "episodes": {"per_round": 4, "write_batch": 4},
    "training": {"min_new_examples": 1_000_000},  # no fine-tuning: a run is needed, not a model
    "evaluation": {"heldout_per_arm": 2},
}


def _cli(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _error_line(result, *fragments):
    """The command failed with exit 2 and exactly one line on stderr holding `fragments`."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every folder under `root`, and every file with its size and modification time (SQLite's
    transient -wal/-shm/-journal files, which an open creates and a close removes, left out)."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if not p.name.endswith(("-wal", "-shm", "-journal"))
    }


def _config(folder: Path) -> Path:
    data = dict(TINY, workdir=str(folder / "work"))
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A completed tiny run in a database that is not the default one: (folder, run id, db,
    the run command's result)."""
    folder = tmp_path_factory.mktemp("finished")
    db = folder / "elsewhere" / "runs.db"
    result = _cli(["run", "--config", _config(folder), "--db", db, "--quiet"])
    assert result.exit_code == 0, result.output
    with open_store(db, create=False) as store:
        (run,) = store.list_runs()
    assert run.status == "completed"
    return folder, run.id, db, result


@pytest.fixture
def blocked(tmp_path, monkeypatch):
    """A folder holding a plain file: a path under that file cannot be created, even by root."""
    monkeypatch.chdir(tmp_path)  # the default workdir and database would land here
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


# 1. a workdir (or database folder) that cannot be written -------------------------------------


def test_workdir_under_a_file(blocked):
    before = _tree(blocked)
    result = _cli(["run", "--workdir", blocked / "afile" / "sub", "--quiet"])
    _error_line(result, f"workdir {blocked / 'afile' / 'sub'}", "is a file", "--workdir DIR")
    assert _tree(blocked) == before  # no database, no pedagogy-runs, no run folder


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="no /proc here")
def test_workdir_in_proc(blocked):
    before = _tree(blocked)
    result = _cli(["run", "--workdir", "/proc/pedagogy-x", "--quiet"])
    _error_line(result, "workdir /proc/pedagogy-x", "cannot write in /proc", "--workdir DIR")
    assert _tree(blocked) == before


def test_database_folder_under_a_file(blocked):
    before = _tree(blocked)
    result = _cli(
        ["run", "--workdir", blocked / "work", "--db", blocked / "afile" / "p.db", "--quiet"]
    )
    _error_line(result, f"db {blocked / 'afile' / 'p.db'}", "is a file", "--db PATH")
    assert _tree(blocked) == before  # the workdir was not created either


# 2. export to a path that cannot be written ------------------------------------------------


def test_export_to_an_unwritable_path(finished, blocked):
    folder, run_id, db, _ = finished
    before, outside = _tree(folder), _tree(blocked)
    out = blocked / "afile" / "records.jsonl"
    result = _cli(["export", run_id, "--db", db, "--out", out])
    _error_line(result, f"--out {out}", "is a file, not a folder", "choose a path")
    result = _cli(["export", run_id, "--db", db, "--format", "hf", "--out", blocked / "afile"])
    _error_line(result, "--format hf writes a folder")
    if Path("/proc").is_dir():
        result = _cli(["export", run_id, "--db", db, "--out", "/proc/pedagogy-x/r.jsonl"])
        _error_line(result, "cannot write in /proc", "--out")
    assert _tree(folder) == before and _tree(blocked) == outside


# 3. unknown episode and model version ids say which command lists the valid ones ------------


def test_unknown_episode_names_the_listing(finished, monkeypatch):
    folder, run_id, db, _ = finished
    monkeypatch.chdir(folder)
    before = _tree(folder)
    line = _error_line(_cli(["show", run_id, "--episode", "nope", "--db", db]), "'nope'")
    listing = f"pedagogy show {run_id} --episodes --db {db}"
    assert listing in line
    result = _cli(listing.split()[1:] + ["--json"])
    assert result.exit_code == 0, result.output
    ids = [row["id"] for row in json.loads(result.stdout)]
    assert len(ids) == 4
    assert _cli(["show", run_id, "--episode", ids[0], "--db", db]).exit_code == 0
    assert _tree(folder) == before


def test_unknown_model_version_names_the_listing(finished, monkeypatch):
    folder, run_id, db, _ = finished
    monkeypatch.chdir(folder)
    before = _tree(folder)
    line = _error_line(_cli(["audit", "model", "nope", "--db", db]), "'nope'")
    assert f"pedagogy show RUN --db {db}" in line and "version ids" in line
    shown = _cli(["show", run_id, "--db", db])  # lists the whole version ids
    version = f"{run_id}-student-v0"
    assert shown.exit_code == 0 and version in shown.stdout, shown.output
    assert _cli(["audit", "model", version, "--db", db]).exit_code == 0
    assert _tree(folder) == before


# 4. the hint after a run names a database that is not the default one ----------------------


def test_next_hint_names_the_database(finished):
    _, run_id, db, result = finished
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("next")]
    assert f"pedagogy show {run_id} --db {db}" in line
    assert f"pedagogy replay {run_id} --db {db}" in line


def test_default_database_needs_no_db_option(tmp_path, monkeypatch):
    from pedagogy.checks import db_option

    monkeypatch.chdir(tmp_path)
    default = tmp_path / "pedagogy-runs" / "pedagogy.db"
    assert db_option(f"sqlite:///{default}") == ""
    assert db_option(str(tmp_path / "other.db")) == f" --db {tmp_path / 'other.db'}"
    assert db_option(None) == ""


# 5. Ctrl-C names the run to resume ---------------------------------------------------------


def test_interrupt_names_the_run_id(tmp_path, monkeypatch):
    from pedagogy.progress import LiveProgress

    event = LiveProgress.event

    def interrupt_once_started(self, kind, data):
        event(self, kind, data)
        if kind == "run_started":
            raise KeyboardInterrupt

    monkeypatch.setattr(LiveProgress, "event", interrupt_once_started)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "elsewhere.db"
    result = _cli(["run", "--config", _config(tmp_path), "--db", db, "--quiet"])
    with open_store(db, create=False) as store:
        (run,) = store.list_runs()
    assert result.exit_code == 130, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"`pedagogy run --resume {run.id} --db {db}`" in lines[0]
    assert "RUN_ID" not in result.output
    assert run.status == "interrupted" and run.id in (run.error or "")


# 6. resuming a completed run runs nothing and reports its recorded duration -----------------


def test_resume_of_a_completed_run(finished, monkeypatch):
    folder, run_id, db, _ = finished
    monkeypatch.chdir(folder)
    with open_store(db, create=False) as store:
        run = store.get_run(run_id)
    recorded = (run.finished_at - run.created_at).total_seconds()
    before = _tree(folder)
    result = _cli(["run", "--resume", run_id, "--db", db, "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"run        {run_id} (completed, {recorded:.0f} s)" in result.stdout
    assert f"run {run_id} had already completed" in result.stdout
    assert "nothing was run" in result.stdout
    assert _tree(folder) == before  # no new environment record, curve, checkpoint or row
    with open_store(db, create=False) as store:
        again = store.get_run(run_id)
    assert (again.status, again.finished_at) == ("completed", run.finished_at)


# 7. a renamed public attribute keeps its old name for a release ----------------------------


def test_renders_offline_is_a_deprecated_alias():
    from pedagogy.agents.roles import Teacher

    class FixedSolutions:  # a backend that writes the same solution whatever it is asked
        name, model, follows_instructions = "scripted", "scripted", False

    teacher = Teacher(FixedSolutions())
    with pytest.warns(DeprecationWarning, match="use Teacher.renders_styles"):
        assert teacher.renders_offline is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert teacher.renders_styles is True
