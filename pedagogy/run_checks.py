"""A run's pre-flight checks: every name, option combination, endpoint and arm a run needs is
checked before the run row is written, so that a bad input leaves nothing behind.

Each check raises a ConfigError naming the bad value and the fix, or warns where the run can go
on but part of it cannot work (answers cut short, problems the scripted teacher cannot explain).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from typing import Any

from pedagogy.agents.roles import make_turn
from pedagogy.backends.base import Completion
from pedagogy.backends.registry import check_backend_kind
from pedagogy.config import RunConfig
from pedagogy.domains.base import Problem, arm_name, has_parameters, parse_arm, reads_problems
from pedagogy.errors import ConfigError, PedagogyError
from pedagogy.graphs.episode import Agents, build_episode_graph


def domain_arms(config: RunConfig, domain) -> list[str]:
    """The arms the run teaches: `curriculum.arms` (each one of the domain's), else all."""
    arms = [arm_name(s, lv) for s in domain.skills() for lv in domain.levels(s)]
    if config.curriculum.arms:
        unknown = [a for a in config.curriculum.arms if a not in arms]
        if unknown:
            raise ConfigError(
                f"curriculum.arms: {unknown[0]!r} is not an arm of domain {config.domain.name!r}; "
                f"choose from {', '.join(arms)}"
            )
        arms = list(config.curriculum.arms)
    return arms


def check_backend_kinds(config: RunConfig) -> None:
    """Every backend kind is registered; the student is trainable; an LLM generator or judge
    has its backend."""
    for cfg in (config.teacher, config.student, config.generator.backend, config.verifier.backend):
        if cfg is not None:
            check_backend_kind(cfg.kind)
    if config.student.kind != "transformers":
        raise ConfigError(
            f"student.kind {config.student.kind!r}: the student must be a trainable local model; "
            "use kind: transformers (model: tiny, a local directory or a hub id)"
        )
    if config.training.kind == "onpolicy" and config.teacher.kind != "transformers":
        raise ConfigError(
            f"training.kind onpolicy needs a teacher model that scores the student's tokens, "
            f"but teacher.kind is {config.teacher.kind!r}; use teacher.kind transformers (model: "
            "tiny-teacher, or a local model sharing the student's tokenizer)"
        )
    if config.training.kind == "onpolicy" and config.training.lora:
        raise ConfigError(
            "training.kind onpolicy trains the whole student; LoRA is not supported for it yet: "
            "set training.lora false, or train with sft"
        )
    if config.training.kind == "onpolicy" and config.agent.enabled:
        raise ConfigError(
            "training.kind onpolicy trains on text answers; an acting student (agent.enabled) "
            "trains with trajectory_sft"
        )
    for role, sub in (("generator", config.generator), ("verifier", config.verifier)):
        if (
            sub.kind != ("procedural" if role == "generator" else "programmatic")
            and sub.backend is None
        ):
            raise ConfigError(
                f"{role}.kind {sub.kind!r} needs {role}.backend; add one or use the default kind"
            )


def check_refinement(config: RunConfig, domain) -> None:
    """Combinations of refinement and generator options that cannot work, named with the fix."""
    refine_by, gen = config.curriculum.refine_by, config.generator
    if refine_by == "generator" and gen.kind != "llm":
        raise ConfigError(
            "curriculum.refine_by 'generator' needs an LLM generator; set generator.kind: llm "
            "with a backend, or use refine_by: teacher"
        )
    if gen.train and refine_by != "generator":
        raise ConfigError(
            f"generator.train learns to write refinements, but curriculum.refine_by is "
            f"{refine_by!r}; set refine_by: generator (with refine > 0) or generator.train: false"
        )
    if gen.kind == "llm" and not gen.pose and refine_by != "generator":
        raise ConfigError(
            f"generator.pose: false leaves the LLM generator nothing to do with curriculum."
            f"refine_by {refine_by!r}; set refine_by: generator or pose: true"
        )
    if gen.adapt and not has_parameters(domain):
        raise ConfigError(
            f"generator.adapt needs the generator settings of each problem, and domain "
            f"{config.domain.name!r} cannot tell them (no parameters method); use a domain with "
            "parameters(problem) (reasoning-gym has one) or generator.adapt: false"
        )
    if refine_by != "domain" and not reads_problems(domain):
        raise ConfigError(
            f"curriculum.refine_by {refine_by!r}: domain {config.domain.name!r} cannot read "
            "written problems to check them (no parse_problem method); use refine_by: domain "
            "or a domain with parse_problem"
        )


STARTUP_SAMPLES = 16
"""Problems drawn per arm at startup, to check the teacher and size the student's context."""
Samples = dict[str, list[tuple[Problem, str | None]]]


def sample_arms(domain: Any, arms: list[str]) -> Samples:
    """A few problems of each arm with the domain's solutions (None where it has none), drawn
    from a seed of their own so that the run's problems stay as they were."""
    samples = {}
    for arm in arms:
        skill, level = parse_arm(arm)
        problems = domain.generate(random.Random(f"startup:{arm}"), STARTUP_SAMPLES, skill, level)
        samples[arm] = [(p, domain.solve(p)) for p in problems]
    return samples


def check_teacher_explains(config: RunConfig, domain: Any, samples: Samples) -> None:
    """Refuse, before any model is built, a scripted teacher that cannot explain an arm (the
    domain has no solution, or for an acting student no demonstration, for any sampled problem),
    naming the fix; warn where only some problems have one (those explain turns end as errors)."""
    if config.teacher.kind != "scripted":
        return
    demonstrate = None
    if config.agent.enabled and config.agent.explain == "demonstration":
        from pedagogy.agents.acting import DemonstrationBackend

        demonstrate = DemonstrationBackend(domain, demo=config.agent.demo).demonstration
    for arm, pairs in samples.items():
        missing, reason = 0, ""
        for problem, solution in pairs:
            if demonstrate is not None:
                try:
                    demonstrate(problem)
                except PedagogyError as err:
                    missing, reason = missing + 1, str(err)
            elif solution is None:
                missing += 1
        if pairs and missing == len(pairs):
            what = "demonstrate" if demonstrate is not None else "explain"
            raise ConfigError(
                f"the scripted teacher cannot {what} {arm}: "
                + (reason or _no_solution(config, domain, arm, len(pairs)))
            )
        if missing:
            warnings.warn(
                f"the scripted teacher has nothing to show for {missing} of {len(pairs)} sampled "
                f"{arm} problems; its explanations of such problems end as errors (an LLM teacher "
                "explains them)",
                stacklevel=2,
            )


def _no_solution(config: RunConfig, domain: Any, arm: str, n: int) -> str:
    """Why a domain has no solution for any of an arm's `n` sampled problems, and the fix."""
    name = config.domain.name
    where = f"domain {name!r} has no solution for any of {n} sampled problems; "
    llm = "use an LLM teacher (teacher.kind: litellm or transformers)"
    answer_only = getattr(domain, "answer_only_solutions", None)
    if answer_only is False:
        return (
            f"{where}set domain.options.answer_only_solutions: true (the teacher then gives the "
            f"dataset's reference answer alone) or {llm}"
        )
    if answer_only is True:  # reasoning-gym: the dataset itself has no reference answer
        return (
            f"reasoning-gym gives no reference answer for {arm} (its scorer accepts any valid "
            f"one), so there is nothing to show offline; {llm} or leave the arm out "
            "(curriculum.arms, domain.options.skills)"
        )
    return f"{where}give it solutions (its solve(); a jsonl file's 'solution' field) or {llm}"


def warn_cut_answers(config: RunConfig, samples: Samples) -> None:
    """Warn when an arm's solutions are longer than `student.max_tokens`: the student's answers
    are cut there, so they can never be right (the tiny student only: its tokens are
    characters; other tokenizers' lengths are unknown before the model is loaded)."""
    student = config.student
    if student.kind != "transformers" or student.model != "tiny" or config.agent.enabled:
        return
    longest = {
        arm: max(len(s if s is not None else f"A:{p.answer}") for p, s in pairs)
        for arm, pairs in samples.items()
        if pairs
    }
    over = {arm: n for arm, n in longest.items() if n > student.max_tokens}
    if over:
        arms = ", ".join(f"{arm} ({n})" for arm, n in over.items())
        warnings.warn(
            f"student.max_tokens is {student.max_tokens}, but solutions of {arms} run longer "
            f"(in the tiny student's tokens, characters): its answers there are cut at "
            f"{student.max_tokens} tokens and cannot be right; raise student.max_tokens to "
            f"{max(over.values())} or more",
            stacklevel=2,
        )


def resolve_episode_graph(
    config: RunConfig, episode_graph: Callable[[Agents], Any], where: str
) -> tuple[RunConfig, Callable[[Agents], Any]]:
    """The graph the episodes run through, and the config that records it for `replay`: a
    factory passed from Python (recorded by registered name or import path, even one a later
    command cannot import: that command then says so), else `episodes.graph`, else the
    ready-made graph (recorded as None)."""
    from pedagogy.graphs.registry import graph_ref, resolve_graph

    if episode_graph is not build_episode_graph:
        ref = graph_ref(episode_graph)
    elif config.episodes.graph is not None:
        ref = config.episodes.graph
        try:
            episode_graph = resolve_graph(ref)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    else:
        return config, episode_graph
    episodes = config.episodes.model_copy(update={"graph": ref})
    return config.model_copy(update={"episodes": episodes}), episode_graph


async def check_reachable(backend, role: str, checks: list[Any]) -> None:
    """The backend's startup check, if it has one (an API backend's test call): raises with the
    fix when it cannot answer; its call is kept in `checks` as a turn of `role`, recorded
    outside any episode once the run's row exists (every call is a row)."""
    check = getattr(backend, "check", None)
    if check is not None:
        completion = await check()
        if isinstance(completion, Completion):
            checks.append(make_turn(role, backend, backend.check_request(), completion, 0))
