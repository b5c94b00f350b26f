"""Registries the loop really uses: a part a plugin registers is what a run builds.

One generic `Registry` (`pedagogy.registry`) behind the trainers, backends, samplers, intervention
policies and explanation styles; the config's name fields are checked against them when the
config loads (after its plugins are imported), and the loop builds each part from its registry.
Each end-to-end test is what a user does: a plugin module in a folder, listed under `plugins:`,
and `pedagogy run --config`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.errors import ConfigError, UnknownNameError
from pedagogy.memory import open_store
from pedagogy.registry import Registry

runner = CliRunner()


@pytest.fixture
def restore_registries():
    """Every registry's entries as they were before the test (a plugin registers for good)."""
    from pedagogy.agents import curriculum, explanations, intervention
    from pedagogy.backends import registry as backends
    from pedagogy.training import trainers

    registries = [
        trainers._REGISTRY,
        backends.BACKENDS,
        curriculum.SAMPLERS,
        intervention.POLICIES,
        explanations.STYLES,
    ]
    saved = [dict(r) for r in registries]
    yield
    for registry, entries in zip(registries, saved, strict=True):
        registry.clear()
        registry.update(entries)


def _plugin(tmp_path: Path, monkeypatch, source: str) -> str:
    """A plugin module with `source` in `tmp_path` (importable), by a fresh name."""
    module = f"regplugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


def _run(quick_config, module: str, **overrides):
    cfg = quick_config(plugins=[module], **overrides)
    return runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])


def _db(tmp_path: Path) -> Path:
    return tmp_path / "work" / "pedagogy.db"


# -- the registry type ---------------------------------------------------------------------------


def test_a_registry_registers_refuses_clashes_and_names_the_valid_ones():
    reg: Registry = Registry("widget", {"a": dict}, register_with="register_widget")
    reg.register("b", list)
    assert reg.names() == ["a", "b"] and reg.get("b") is list and "b" in reg
    with pytest.raises(ConfigError, match=r"widget 'b' is already registered.*replace=True"):
        reg.register("b", dict)
    reg.register("b", dict, replace=True)
    assert reg.get("b") is dict
    with pytest.raises(ConfigError, match="must be callable"):
        reg.register("c", None)
    with pytest.raises(ConfigError, match="non-empty string"):
        reg.register("", dict)
    with pytest.raises(UnknownNameError) as err:
        reg.get("z")
    assert str(err.value).startswith("unknown widget 'z'; choose one of: a, b, or register one ")
    assert "register_widget(...)" in str(err.value) and "--plugin MODULE" in str(err.value)
    assert reg.get("z", None) is None  # with a default: dict.get
    copy = reg.copy()
    copy.register("d", dict)
    assert "d" not in reg and isinstance(copy, Registry) and copy.kind == "widget"


def test_the_part_registries_are_registries(restore_registries):
    from pedagogy.backends.registry import BACKENDS, check_backend_kind, register_backend
    from pedagogy.training import trainers

    assert isinstance(trainers._REGISTRY, Registry) and isinstance(BACKENDS, Registry)
    assert trainers.known_trainers() == ["dpo", "redi", "sft", "trajectory_sft"]
    with pytest.raises(UnknownNameError, match=r"unknown backend 'gpt5000'.*register_backend"):
        check_backend_kind("gpt5000")
    register_backend("mine", BACKENDS["scripted"])
    with pytest.raises(ConfigError, match="already registered"):
        register_backend("mine", BACKENDS["scripted"])
    check_backend_kind("mine")


# -- trainers ------------------------------------------------------------------------------------

TRAINER_PLUGIN = '''
"""A plugin: a trainer that wraps sft and leaves a marker that it trained."""
from pathlib import Path

from pedagogy.training.sft import SFT
from pedagogy.training.trainers import register_trainer

MARKER = Path({marker!r})


class RecordingSFT(SFT):
    kind = "recording_sft"

    def train(self, base_path, items, output_dir, config=None, *, progress=None):
        assert all(isinstance(i, tuple) and len(i) == 2 for i in items)  # (prompt, completion)
        result = super().train(base_path, items, output_dir, config, progress=progress)
        with MARKER.open("a") as f:
            f.write(f"{{len(items)}} {{result.steps}} {{config.max_steps}}\\n")
        return result


register_trainer("recording_sft", RecordingSFT, replace=True)
'''


def test_a_plugin_trainer_trains_the_run(quick_config, tmp_path, monkeypatch, restore_registries):
    marker = tmp_path / "trained.txt"
    module = _plugin(tmp_path, monkeypatch, TRAINER_PLUGIN.format(marker=str(marker)))
    result = _run(quick_config, module, rounds=1, training={"kind": "recording_sft"})
    assert result.exit_code == 0, result.output
    store = open_store(str(_db(tmp_path)))
    (run,) = store.list_runs()
    (job,) = store.training_jobs(run.id)
    assert job.kind == "recording_sft" and job.status == "completed"
    examples, steps, max_steps = marker.read_text().split()
    assert int(examples) > 0 and int(steps) == int(max_steps) == 40  # the config's steps
    assert job.metrics["steps"] == 40 and run.config["plugins"] == [module]


def test_a_typo_in_training_kind_fails_at_load_naming_the_trainers(quick_config, tmp_path):
    cfg = quick_config(training={"kind": "stf"})
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "training.kind: unknown trainer 'stf'; choose one of: dpo, redi, sft" in result.output
    assert "register_trainer" in result.output
    assert not (tmp_path / "work").exists()  # nothing written
