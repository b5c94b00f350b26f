"""The benches' arms as data: every packaged arms file loads and every arm's overrides are valid
config; a malformed arms file is one line naming the file, the arm and the fix."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pedagogy.benchmarks import agents as A
from pedagogy.benchmarks import learning as L
from pedagogy.benchmarks.arms import ARMS_DIR, BUDGET_SHARE, load_arms, nest
from pedagogy.cli import app
from pedagogy.config import load_config
from pedagogy.errors import ConfigError

ARMS_FILES = sorted(ARMS_DIR.glob("*.yaml"))


def test_the_packaged_arms_files_are_the_two_benches():
    assert [p.name for p in ARMS_FILES] == ["agents.yaml", "learning.yaml"]
    assert L.ARMS_FILE in ARMS_FILES and A.ARMS_FILE in ARMS_FILES


@pytest.mark.parametrize("path", ARMS_FILES, ids=lambda p: p.name)
def test_every_arm_of_every_file_is_valid_config(path):
    arms = load_arms(path)
    assert any(arm.default for arm in arms.values())
    base = load_config(None)
    for name, arm in arms.items():
        assert arm.description and "\n" not in arm.description, name
        overrides = dict(arm.overrides)
        assert BUDGET_SHARE not in overrides
        config = base.with_overrides(nest(overrides))  # raises ConfigError if not valid config
        for key, value in overrides.items():
            node = config
            for part in key.split("."):
                node = getattr(node, part)
            assert node == value, (name, key)


def test_the_benches_load_their_files():
    assert L.ARMS == {name: arm.as_overrides() for name, arm in L.ARM_SPECS.items()}
    assert L.DEFAULT_ARMS == [n for n, a in L.ARM_SPECS.items() if a.default]
    assert L.ARM_SPECS["pedagogy@half"].budget_share == 0.5
    assert A.DEFAULT_ARMS == ["cot", "agent", "agent+ftp_sag"]
    # The agents bench teaches like the learning bench's standard_kd outside the agent section.
    assert A.COMMON == L.STANDARD_KD
    assert {k for arm in A.ARMS.values() for k in arm if k not in L.STANDARD_KD} == {
        "agent.enabled",
        "agent.demo",
        "agent.sag_n",
        "agent.ftp",
    }


GOOD_ARM = """\
  - name: base
    description: the baseline
    default: true
    overrides:
      training.kind: sft
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "arms.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "body, problem, fix",
    [
        ("arms: [", "not valid YAML at line 1", "fix the syntax"),
        ("- name: x\n", "expected a mapping with one key, `arms`", "for the format"),
        ("arms: []\n", "`arms` is empty", "list at least one arm"),
        ("arms:\n  - just a name\n", "arm #1: expected a mapping", "- name: ..."),
        ("arms:\n  - description: no name\n", "arm #1: `name` must be a non-empty", "give"),
        (
            GOOD_ARM + GOOD_ARM,
            "arm 'base': listed twice",
            "rename or remove one of them",
        ),
        (
            GOOD_ARM + "  - {name: b, description: x, default: true, extend: base}\n",
            "arm 'b': unknown field 'extend'",
            "use only: name, description, default, extends, overrides, budget_share",
        ),
        (
            GOOD_ARM + "  - {name: b, description: x, default: true, extends: nope}\n",
            "arm 'b': `extends: nope` names no arm listed above it",
            "name one of: base",
        ),
        (
            GOOD_ARM + "  - {name: b, description: '', default: true, extends: base}\n",
            "arm 'b': `description` must be one non-empty line",
            "say in one line what the arm does",
        ),
        (
            GOOD_ARM + "  - {name: b, description: x, default: yes please, extends: base}\n",
            "arm 'b': `default` must be true or false, got 'yes please'",
            "write `default: true`",
        ),
        (
            GOOD_ARM + "  - {name: b, description: x, default: true, overrides: [a, b]}\n",
            "arm 'b': `overrides` must be a mapping",
            "overrides: {training.kind: sft}",
        ),
        (
            GOOD_ARM + "  - {name: b, description: x, default: true, overrides: {kind: sft}}\n",
            "arm 'b': override key 'kind' is not a dotted config key",
            "write section.key",
        ),
        (
            GOOD_ARM + "  - {name: b, description: x, default: true, budget_share: 2}\n",
            "arm 'b': `budget_share` must be a number in (0, 1], got 2",
            "budget_share: 0.5",
        ),
        (
            GOOD_ARM + "  - {name: 'a,b', description: x, default: true, extends: base}\n",
            "arm 'a,b': a name cannot hold ',' or '/'",
            "rename it",
        ),
        (
            GOOD_ARM.replace("default: true", "default: false"),
            "no arm has `default: true`",
            "mark the arms to run without --arms",
        ),
    ],
)
def test_a_malformed_arms_file_is_one_line_naming_the_file_the_arm_and_the_fix(
    tmp_path, body, problem, fix
):
    path = _write(tmp_path, body if body.startswith(("arms", "-")) else "arms:\n" + body)
    with pytest.raises(ConfigError) as err:
        load_arms(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert problem in message and fix in message, message


def test_a_missing_file_and_a_field_the_bench_does_not_use(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the arms file"):
        load_arms(tmp_path / "nope.yaml")
    path = _write(tmp_path, "arms:\n" + GOOD_ARM + "    budget_share: 0.5\n")
    assert load_arms(path)["base"].budget_share == 0.5
    with pytest.raises(ConfigError, match="arm 'base': unknown field 'budget_share'; use only"):
        load_arms(path, budget_share=False)


def test_extends_copies_the_parent_and_applies_its_own_overrides_on_top(tmp_path):
    path = _write(
        tmp_path,
        "arms:\n"
        + GOOD_ARM
        + "  - {name: half, description: x, default: false, extends: base, budget_share: 0.5}\n"
        + "  - name: child\n    description: y\n    default: false\n    extends: half\n"
        + "    overrides: {training.kind: redi, episodes.style: worked}\n",
    )
    arms = load_arms(path)
    assert arms["child"].overrides == {"training.kind": "redi", "episodes.style": "worked"}
    assert arms["child"].budget_share == 0.5 and arms["base"].overrides == {"training.kind": "sft"}
    assert arms["child"].as_overrides()[BUDGET_SHARE] == 0.5


def test_a_bad_packaged_arms_file_is_one_line_exit_2_from_the_cli(tmp_path, monkeypatch):
    """The arms load when the bench module is imported: the CLI imports it inside its error
    handling, so a broken file is one line and exit 2, not a traceback."""
    import sys

    import pedagogy.benchmarks.arms as arms_module

    broken = tmp_path / "arms"
    broken.mkdir()
    (broken / "learning.yaml").write_text(
        "arms:\n  - {name: x, description: x, default: maybe, overrides: {a.b: 1}}\n"
    )
    monkeypatch.setattr(arms_module, "ARMS_DIR", broken)
    monkeypatch.delitem(sys.modules, "pedagogy.benchmarks.learning")
    result = CliRunner().invoke(app, ["bench", "learning", "--quick", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "learning.yaml: arm 'x': `default` must be true or false" in result.output
    assert not (tmp_path / "b").exists()
