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


# -- samplers, intervention policies, explanation styles ----------------------------------------

SAMPLER_PLUGIN = '''
"""A plugin: a sampler that only ever draws the first arm, and says which explore it got."""
from dataclasses import dataclass
from pathlib import Path

from pedagogy.agents.curriculum import UniformSampler, register_sampler

MARKER = Path({marker!r})


@dataclass
class FirstArm(UniformSampler):
    OPTIONS = ("explore",)  # the curriculum settings it takes

    explore: float = 0.0

    def sample(self, n):
        MARKER.write_text(f"{{self.explore}} {{self.arms[0]}}")
        return [self.arms[0]] * n


register_sampler("first_arm", FirstArm, replace=True)
'''


def test_a_plugin_sampler_chooses_the_runs_arms(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    marker = tmp_path / "sampled.txt"
    module = _plugin(tmp_path, monkeypatch, SAMPLER_PLUGIN.format(marker=str(marker)))
    result = _run(
        quick_config, module, rounds=1, curriculum={"sampler": "first_arm", "explore": 0.3}
    )
    assert result.exit_code == 0, result.output
    explore, arm = marker.read_text().split()
    assert float(explore) == 0.3  # from curriculum.explore, as its OPTIONS asked
    store = open_store(str(_db(tmp_path)))
    (run,) = store.list_runs()
    episodes = store.episodes(run.id)
    assert episodes and {e.arm for e in episodes} == {arm}


POLICY_PLUGIN = '''
"""A plugin: an intervention policy that never explains, and says which seed the run gave it."""
from dataclasses import dataclass
from pathlib import Path

from pedagogy.agents.intervention import NeverPolicy, register_policy

MARKER = Path({marker!r})


@dataclass
class Silent(NeverPolicy):
    seed: int = 0

    def decide(self, candidates, budget):
        MARKER.write_text(str(self.seed))
        return super().decide(candidates, budget)


register_policy("silent", Silent, replace=True)
'''


def test_a_plugin_intervention_policy_decides_the_runs_explanations(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    import sqlite3

    marker = tmp_path / "decided.txt"
    module = _plugin(tmp_path, monkeypatch, POLICY_PLUGIN.format(marker=str(marker)))
    result = _run(quick_config, module, rounds=1, seed=7, episodes={"intervention": "silent"})
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "7"  # the run supplied its seed
    with sqlite3.connect(_db(tmp_path)) as db:
        assert db.execute("SELECT count(*) FROM explanations").fetchone() == (0,)
        wrong = db.execute("SELECT count(*) FROM episodes WHERE NOT correct_first").fetchone()[0]
    assert wrong > 0  # there were wrong attempts to explain, and the policy explained none


STYLE_PLUGIN = '''
"""A plugin: an explanation style that shows the answer line, under its own name."""
from dataclasses import dataclass
from typing import ClassVar

from pedagogy.agents.explanations import ConciseStyle, register_style


@dataclass(frozen=True)
class AnswerOnly(ConciseStyle):
    name: ClassVar[str] = "answer_only"


register_style("answer_only", AnswerOnly, replace=True)
'''


def test_a_plugin_style_tells_the_runs_explanations(
    quick_config, tmp_path, monkeypatch, restore_registries
):
    import sqlite3

    module = _plugin(tmp_path, monkeypatch, STYLE_PLUGIN)
    result = _run(quick_config, module, rounds=1, episodes={"style": "answer_only"})
    assert result.exit_code == 0, result.output
    with sqlite3.connect(_db(tmp_path)) as db:
        styles = db.execute("SELECT style, count(*) FROM explanations GROUP BY style").fetchall()
    assert [s for s, _ in styles] == ["answer_only"] and styles[0][1] > 0


@pytest.mark.parametrize(
    "section, field, message",
    [
        ({"curriculum": {"sampler": "bandt"}}, "curriculum.sampler", "register_sampler"),
        ({"episodes": {"intervention": "utilty"}}, "episodes.intervention", "register_policy"),
        ({"episodes": {"style": "consice"}}, "episodes.style", "register_style"),
    ],
)
def test_a_typo_in_a_named_field_fails_at_load(quick_config, tmp_path, section, field, message):
    cfg = quick_config(**section)
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"{field}: unknown " in result.output and message in result.output
    if field == "episodes.style":
        assert "adaptive, concise, detailed, probe, worked" in result.output
    assert not (tmp_path / "work").exists()
