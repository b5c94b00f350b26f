"""The agents of a run, built from its config and its backends: the student, teacher and
verifier roles, for an acting run the actors and their tools, and the problem generator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pedagogy.agents.roles import Generator, Student, Teacher, Verifier
from pedagogy.config import RunConfig
from pedagogy.domains.base import domain_tool_options, domain_tools
from pedagogy.graphs.agent_episode import AgentEpisodeAgents, build_agent_episode_graph
from pedagogy.graphs.episode import Agents, build_episode_graph


def build_agents(
    config: RunConfig,
    domain: Any,
    student_backend: Any,
    teacher_backend: Any,
    judge_backend: Any,
    episode_graph: Callable[[Agents], Any],
) -> tuple[Agents, Callable[[Agents], Any]]:
    """The episodes' agents, and the graph they run through: an acting run's agents run
    through the agent-episode graph unless a custom graph was given."""
    roles = dict(
        student=Student(
            student_backend,
            max_tokens=config.student.max_tokens,
            temperature=config.student.temperature,
        ),
        teacher=Teacher(
            teacher_backend,
            budget=config.episodes.explain_budget,
            max_tokens=config.teacher.max_tokens,
            temperature=config.teacher.temperature,
        ),
        verifier=Verifier(
            domain,
            judge_backend,
            **(judge_settings(config) if judge_backend is not None else {}),
        ),
        reattempt=config.episodes.reattempt,
    )
    if not config.agent.enabled:
        return Agents(**roles), episode_graph
    agents = acting_agents(config, domain, student_backend, teacher_backend, roles)
    if episode_graph is build_episode_graph:
        episode_graph = build_agent_episode_graph
    return agents, episode_graph


def build_generator(config: RunConfig, domain: Any, backend: Any, backend_cfg: Any) -> Generator:
    """The problem generator: the domain's, posing through `backend` when it is an LLM one."""
    return Generator(
        domain,
        backend,
        poses=config.generator.pose,
        max_tokens=backend_cfg.max_tokens if backend_cfg else 96,
        temperature=backend_cfg.temperature if backend_cfg else 0.0,
    )


def judge_settings(config: RunConfig) -> dict[str, Any]:
    """The LLM judge's call settings: its backend's `max_tokens` and `temperature`, and the
    samples per verdict."""
    backend = config.verifier.backend
    return {
        "max_tokens": backend.max_tokens,
        "temperature": backend.temperature,
        "judge_samples": config.verifier.judge_samples,
    }


def agent_tools(config: RunConfig, domain: Any) -> dict[str, Any]:
    """The tools of an acting run: `agent.tools`, else the domain's, else the calculator; each
    built with the domain's options, then the config's (the sandbox limits for `python`)."""
    from pedagogy.tools.registry import build_tool

    ac = config.agent
    names = ac.tools or domain_tools(domain) or ["calculator"]
    domain_options = domain_tool_options(domain)
    tools = {}
    for name in names:
        options = {**domain_options.get(name, {}), **ac.tool_options.get(name, {})}
        if name == "python":
            options = {**ac.sandbox.model_dump(), **options}
        tools[name] = build_tool(name, **options)
    return tools


def acting_agents(
    config: RunConfig, domain: Any, student_backend: Any, teacher_backend: Any, roles: dict
) -> Agents:
    """The agents of an acting run: the student acts with tools; the teacher demonstrates (the
    scripted teacher with the domain's demonstrations, an LLM teacher through function calling)."""
    from pedagogy.agents.acting import Actor, DemonstrationBackend, ftp_from

    ac = config.agent
    tools = agent_tools(config, domain)
    actors = {
        sag_n: Actor(
            student_backend,
            tools,
            max_steps=ac.max_steps,
            max_tokens=ac.step_tokens,
            temperature=config.student.temperature,
            sag_n=sag_n,
            sag_temperature=ac.sag_temperature,
            multiline_answer=bool(getattr(domain, "multiline_answers", False)),
        )
        for sag_n in {ac.sag_n, 1 if ac.sag_on == "evaluation" else ac.sag_n}
    }
    actor = actors[1 if ac.sag_on == "evaluation" else ac.sag_n]
    scripted = config.teacher.kind == "scripted"
    demonstrator = Actor(
        DemonstrationBackend(domain, demo=ac.demo) if scripted else teacher_backend,
        tools,
        agent="teacher",
        max_steps=max(16, ac.max_steps),
        max_tokens=config.teacher.max_tokens,
        temperature=config.teacher.temperature,
        ftp=ftp_from(domain) if ac.ftp and not scripted else None,
        multiline_answer=bool(getattr(domain, "multiline_answers", False)),
    )
    explain = "demonstrate" if ac.explain == "demonstration" else "text"
    return AgentEpisodeAgents(
        **roles,
        actor=actor,
        demonstrator=demonstrator,
        explain=explain,
        eval_actor=actors[ac.sag_n],
    )
