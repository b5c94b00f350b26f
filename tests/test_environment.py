import json
from importlib import metadata

from pedagogy.environment import PACKAGES, library_versions, read_environment, record_environment


def test_library_versions_name_every_package_and_installed_ones_match():
    versions = library_versions()
    assert list(versions) == list(PACKAGES)
    assert versions["transformers"] == metadata.version("transformers")
    assert versions["torch"] == metadata.version("torch")


def test_record_environment_appends_one_entry_per_process(tmp_path):
    assert read_environment(tmp_path) == []
    first = record_environment(tmp_path, resumed=False)
    record_environment(tmp_path, resumed=True)
    entries = read_environment(tmp_path)
    assert [e["resumed"] for e in entries] == [False, True]
    assert entries[0] == first and entries[0]["python"]
    # A torn file (a process killed mid-write) is started again rather than crashing a resume.
    (tmp_path / "environment.json").write_text("[{")
    record_environment(tmp_path, resumed=True)
    assert len(json.loads((tmp_path / "environment.json").read_text())) == 1
