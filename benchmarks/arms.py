"""Arms as data: each bench's arms are a YAML file in `arms/` beside this module.

A file is a mapping with one key, `arms`, a list of arms in the order they are listed and run:

    arms:
      - name: standard_kd
        description: plain distillation (one line)
        default: true            # run without --arms (false: only when named)
        overrides:               # dotted config keys -> values, over the embedded default
          curriculum.sampler: uniform
      - name: kd+redi
        description: standard_kd with REDI on the student's wrong attempts
        default: true
        extends: standard_kd     # start from an arm listed above, then apply `overrides`
        overrides:
          training.kind: redi
      - name: pedagogy@half
        extends: pedagogy
        budget_share: 0.5        # this share of the bench's explanation budget (learning bench)

Loading checks the file's shape (names, one-line descriptions, `default`, `extends`, dotted
keys); a problem is one `ConfigError` line naming the file, the arm and the fix. Whether the
overrides are valid config is checked when an arm's run config is built (`arm_config`), before
the first run starts, and by the tests for every packaged file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pedagogy.errors import ConfigError

ARMS_DIR = Path(__file__).with_name("arms")
"""The packaged arms files: `learning.yaml`, `agents.yaml`."""

BUDGET_SHARE = "bench.budget_share"
"""Not a config key: an arm's share of the bench's explanation budget, as it appears among the
arm's overrides in `ARMS` and in bench.json."""

FIELDS = ("name", "description", "default", "extends", "overrides", "budget_share")


@dataclass(frozen=True)
class Arm:
    """One arm of a bench, as its file gives it (with `extends` resolved)."""

    name: str
    description: str
    default: bool
    overrides: dict[str, Any]
    """Dotted config keys -> values, the inherited ones included."""
    budget_share: float | None = None

    def as_overrides(self) -> dict[str, Any]:
        """The overrides as the bench stores and applies them (`BUDGET_SHARE` included)."""
        if self.budget_share is None:
            return dict(self.overrides)
        return {**self.overrides, BUDGET_SHARE: self.budget_share}


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}} (the shape `RunConfig.with_overrides` takes)."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def load_arms(path: str | Path, budget_share: bool = True) -> dict[str, Arm]:
    """The arms of `path` by name, in file order. `budget_share=False`: the bench has no use
    for the field, and an arm that sets it is an error."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(
            f"{path}: cannot read the arms file ({err.strerror or err}); check the path"
        ) from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{at} ({problem}); fix the syntax") from None
    if not isinstance(data, dict) or set(data) != {"arms"} or not isinstance(data["arms"], list):
        raise ConfigError(
            f"{path}: expected a mapping with one key, `arms`, a list of arms; "
            "see the docstring of pedagogy.benchmarks.arms for the format"
        )
    if not data["arms"]:
        raise ConfigError(f"{path}: `arms` is empty; list at least one arm")
    arms: dict[str, Arm] = {}
    for i, raw in enumerate(data["arms"]):
        arm = _arm(path, i, raw, arms, budget_share)
        arms[arm.name] = arm
    if not any(a.default for a in arms.values()):
        raise ConfigError(
            f"{path}: no arm has `default: true`; mark the arms to run without --arms"
        )
    return arms


def _arm(path: Path, i: int, raw: Any, earlier: dict[str, Arm], budget_share: bool) -> Arm:
    """One entry of `arms`, checked; `earlier`: the arms listed above it."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: arm #{i + 1}: expected a mapping with name, description, default and "
            f"overrides, got {type(raw).__name__}; write it as `- name: ...`"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ConfigError(
            f"{path}: arm #{i + 1}: `name` must be a non-empty string without surrounding "
            f"spaces, got {name!r}; give the arm a name"
        )

    def fail(problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{path}: arm {name!r}: {problem}; {fix}")

    if "," in name or "/" in name:
        raise fail("a name cannot hold ',' or '/'", "rename it (--arms is comma-separated)")
    if name in earlier:
        raise fail("listed twice", "rename or remove one of them")
    unknown = [k for k in raw if k not in FIELDS or (k == "budget_share" and not budget_share)]
    if unknown:
        allowed = [f for f in FIELDS if budget_share or f != "budget_share"]
        raise fail(f"unknown field {unknown[0]!r}", f"use only: {', '.join(allowed)}")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip() or "\n" in description.strip():
        raise fail("`description` must be one non-empty line", "say in one line what the arm does")
    default = raw.get("default")
    if not isinstance(default, bool):
        raise fail(
            f"`default` must be true or false, got {default!r}",
            "write `default: true` to run it without --arms",
        )
    overrides: dict[str, Any] = {}
    share: float | None = None
    parent = raw.get("extends")
    if parent is not None:
        if parent not in earlier:
            raise fail(
                f"`extends: {parent}` names no arm listed above it",
                f"name one of: {', '.join(earlier) or '(none yet)'}",
            )
        overrides = dict(earlier[parent].overrides)
        share = earlier[parent].budget_share
    own = raw.get("overrides", {})
    if own is None:
        own = {}
    if not isinstance(own, dict):
        raise fail(
            "`overrides` must be a mapping of dotted config keys to values",
            "write e.g. `overrides: {training.kind: sft}`",
        )
    for key in own:
        parts = key.split(".") if isinstance(key, str) else []
        if len(parts) < 2 or not all(p.strip() == p and p for p in parts):
            raise fail(
                f"override key {key!r} is not a dotted config key",
                "write section.key, e.g. `episodes.style: worked`",
            )
        if key == BUDGET_SHARE:
            raise fail(f"{key} is not a config key", "use the arm's `budget_share` field")
    overrides.update(own)
    if "budget_share" in raw:
        share = raw["budget_share"]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise fail(
                f"`budget_share` must be a number in (0, 1], got {share!r}",
                "e.g. `budget_share: 0.5` for half the explanations",
            )
        share = float(share)
    if not overrides and parent is None:
        raise fail("no overrides and no `extends`", "give its overrides or the arm it extends")
    return Arm(name, description.strip(), default, overrides, share)


def dotted_overrides(arms: dict[str, Arm]) -> dict[str, dict[str, Any]]:
    """{name: the arm's overrides as applied (`Arm.as_overrides`)}, in file order."""
    return {name: arm.as_overrides() for name, arm in arms.items()}


def default_names(arms: dict[str, Arm]) -> list[str]:
    """The arms run without --arms, in file order."""
    return [name for name, arm in arms.items() if arm.default]
