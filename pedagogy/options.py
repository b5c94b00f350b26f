"""Typed options: each kind's `options` mapping checked against what builds it, when a config loads.

A config names a kind (a backend kind, a domain, a tool, an intervention policy) and gives it an
`options` mapping. Each kind's options are a typed model, selected by the kind and made from the
keyword parameters of what takes them (the class or factory its registry names): their names,
type annotations and defaults. So a typo (`num_threads` for `threads`), a wrong type or a missing
required option is reported with every other problem of the config, before any model is built,
instead of as a TypeError from deep inside a run. A custom kind registered by a plugin gets the
same check from its factory's signature; a factory that takes `**options` is not checked.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

if TYPE_CHECKING:
    from pedagogy.config import BackendConfig, RunConfig

Target = str | Callable[..., Any]
"""What takes a kind's options: "module:attribute" (imported when checked) or the callable."""


@dataclass(frozen=True)
class OptionsSpec:
    """Where a kind's options go: the callable whose keyword parameters they are, the parameters
    the config fills from its own fields (not options), and keys consumed before building."""

    target: Target | None
    """None: the kind takes no options."""
    supplied: tuple[str, ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()
    """(key, type) of options read by the runner, not by the target (transformers' `tiny`)."""


def _resolve(target: Target) -> Callable[..., Any]:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@cache
def options_model(spec: OptionsSpec) -> type[BaseModel] | None:
    """The typed model of `spec`'s options; None when its target takes `**options` (unchecked)."""
    fields: dict[str, Any] = {key: (kind, None) for key, kind in spec.extra}
    if spec.target is not None:
        target = _resolve(spec.target)
        func = target.__init__ if inspect.isclass(target) else target
        try:
            params = list(inspect.signature(target).parameters.values())
        except (TypeError, ValueError):
            return None
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # names only imported for type checking: check names, not types
            hints = {}
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                return None
            if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) or p.name in spec.supplied:
                continue
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (hints.get(p.name, Any), default)
    return create_model(  # type: ignore[call-overload]
        "Options",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


def option_problems(
    where: str, what: str, spec: OptionsSpec, options: dict[str, Any], *, partial: bool = False
) -> list[str]:
    """One line per bad option of `options` (`where` is its place in the config, `what` the
    kind in words), naming the option and the known ones; [] when they fit. `partial`: options
    that are supplied elsewhere too, so a missing one is not a problem."""
    model = options_model(spec)
    if model is None:
        return []
    known = ", ".join(sorted(model.model_fields)) or "none"
    try:
        model.model_validate(options)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                takes = f"its options: {known}" if model.model_fields else "it takes no options"
                lines.append(f"{where}.{key}: {what} has no option {key!r}; {takes}")
            elif e["type"] == "missing":
                if not partial:
                    lines.append(f"{where}: {what} needs option {key!r}; its options: {known}")
            else:
                lines.append(f"{where}.{key}: {e['msg']} (got {e.get('input')!r})")
        return lines
    return []


_SUPPLIED_BY_CONFIG = ("model", "api_base", "api_key_env", "max_concurrency")
"""A backend's parameters filled from its config section's own keys, not from `options`."""
_RUNNER_KEYS: dict[str, tuple[tuple[str, Any], ...]] = {
    "transformers": (("tiny", dict), ("tiny_teacher", dict))
}
"""Backend options the runner reads before building (`tiny`: the tiny student's sizes;
`tiny_teacher`: the embedded teacher's shape and training, `pedagogy.training.teacher_model`)."""


def config_option_problems(config: RunConfig) -> list[str]:
    """Every bad option of `config`'s kinds: backends, domain, tools, intervention policy."""
    from pedagogy.agents.intervention import POLICIES
    from pedagogy.backends.registry import backend_options_target
    from pedagogy.domains.registry import domain_options_target
    from pedagogy.tools.registry import tool_options_target

    problems: list[str] = []
    for where, backend in _backends(config):
        checked, target = backend_options_target(backend.kind)
        if checked:
            spec = OptionsSpec(target, _SUPPLIED_BY_CONFIG, _RUNNER_KEYS.get(backend.kind, ()))
            what = f"backend kind {backend.kind!r}"
            problems += option_problems(f"{where}.options", what, spec, backend.options)
    problems += teacher_model_problems(config)
    domain_target = domain_options_target(config.domain.name)
    if domain_target is not None:
        what = f"domain {config.domain.name!r}"
        spec = OptionsSpec(domain_target)
        problems += option_problems("domain.options", what, spec, config.domain.options)
    for name, options in config.agent.tool_options.items():
        tool_target = tool_options_target(name)
        if tool_target is not None:
            # The domain supplies some of its tools' options (the world's corpus): a missing
            # one may come from there.
            where = f"agent.tool_options.{name}"
            spec = OptionsSpec(tool_target)
            problems += option_problems(where, f"tool {name!r}", spec, options, partial=True)
    policy = POLICIES.get(config.episodes.intervention)
    if policy is not None:
        spec = OptionsSpec(policy, supplied=("student", "profile"))
        what = f"intervention policy {config.episodes.intervention!r}"
        problems += option_problems(
            "episodes.intervention_options", what, spec, config.episodes.intervention_options
        )
    return problems


def teacher_model_problems(config: RunConfig) -> list[str]:
    """What is wrong with the embedded teacher's settings (`teacher.model: tiny-teacher`): its
    `options.tiny_teacher` (each key and value), the name given to another role, and what the
    tiny teacher cannot do (act with tools, write refinements)."""
    from pedagogy.errors import ConfigError
    from pedagogy.training.teacher_model import TEACHER_MODEL, TinyTeacherConfig

    problems: list[str] = []
    for where, backend in _backends(config):
        named = backend.kind == "transformers" and backend.model == TEACHER_MODEL
        given = "tiny_teacher" in backend.options
        if named and where != "teacher":
            problems.append(
                f"{where}.model: {TEACHER_MODEL!r} is the embedded teacher; only teacher.model "
                "can name it (the student's embedded model is 'tiny')"
            )
        elif given and not named:
            problems.append(
                f"{where}.options.tiny_teacher is read only with {where}.model: {TEACHER_MODEL!r} "
                f"(kind transformers); set the model or remove the option"
            )
        elif named and isinstance(backend.options.get("tiny_teacher", {}), dict):
            try:
                TinyTeacherConfig.from_options(
                    backend.options.get("tiny_teacher"), f"{where}.options.tiny_teacher"
                )
            except ConfigError as err:
                problems.append(str(err))
    if config.teacher.model == TEACHER_MODEL and config.teacher.kind == "transformers":
        if config.agent.enabled:
            problems.append(
                f"teacher.model {TEACHER_MODEL!r} writes text solutions and cannot demonstrate "
                "with tools yet; use agent.enabled: false or teacher.kind: scripted"
            )
        if config.curriculum.refine > 0 and config.curriculum.refine_by == "teacher":
            problems.append(
                f"curriculum.refine_by: teacher — the {TEACHER_MODEL} cannot write new problems; "
                "use refine_by: domain"
            )
    return problems


def _backends(config: RunConfig) -> Iterator[tuple[str, BackendConfig]]:
    yield "teacher", config.teacher
    yield "student", config.student
    if config.generator.backend is not None:
        yield "generator.backend", config.generator.backend
    backend = getattr(config.verifier, "backend", None)
    if backend is not None:
        yield "verifier.backend", backend
