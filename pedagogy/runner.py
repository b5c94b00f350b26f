"""Start or resume a run: validate everything first, then create the run row, then loop.

Order matters for bad input: config, names, database, endpoints and model directories are all
checked before anything is written, so a bad input leaves no run row behind; a failure after the
run row exists marks the run failed with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pedagogy.agents.roles import Generator, Student, Teacher, Verifier
from pedagogy.backends.registry import build_backend, check_backend_kind
from pedagogy.config import RunConfig, config_from_dict
from pedagogy.domains.base import arm_name, has_parameters, reads_problems
from pedagogy.environment import record_environment
from pedagogy.errors import ConfigError, PedagogyError
from pedagogy.graphs.episode import Agents, build_episode_graph
from pedagogy.graphs.loop import EventSink, LoopState, Session, _no_events, build_loop_graph
from pedagogy.memory.records import ModelVersionRecord, RunRecord


@dataclass
class RunResult:
    run_id: str
    status: str
    db_url: str
    run_dir: Path
    seconds: float


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def open_run_store(db: str):
    from pedagogy.memory.store import open_store

    if "://" not in db:
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return open_store(db)


def _domain_arms(config: RunConfig, domain) -> list[str]:
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


def build_domain_from(config: RunConfig):
    from pedagogy.domains.registry import build_domain

    try:
        return build_domain(config.domain.name, **config.domain.options)
    except TypeError as err:
        raise ConfigError(
            f"domain.options for {config.domain.name!r}: {err}; fix the option names"
        ) from None


def _check_backend_kinds(config: RunConfig) -> None:
    for cfg in (config.teacher, config.student, config.generator.backend, config.verifier.backend):
        if cfg is not None:
            check_backend_kind(cfg.kind)
    if config.student.kind != "transformers":
        raise ConfigError(
            f"student.kind {config.student.kind!r}: the student must be a trainable local model; "
            "use kind: transformers (model: tiny, a local directory or a hub id)"
        )
    for role, sub in (("generator", config.generator), ("verifier", config.verifier)):
        if (
            sub.kind != ("procedural" if role == "generator" else "programmatic")
            and sub.backend is None
        ):
            raise ConfigError(
                f"{role}.kind {sub.kind!r} needs {role}.backend; add one or use the default kind"
            )


def _check_refinement(config: RunConfig, domain) -> None:
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


def _local_model(backend_cfg, path: Path, seed: int, role: str) -> str:
    """The backend's model, or for a transformers backend with model 'tiny' a freshly built
    tiny model at `path`."""
    if backend_cfg.kind != "transformers" or backend_cfg.model != "tiny":
        return backend_cfg.model
    from pedagogy.training.tiny import TinyStudentConfig, build_tiny_student

    try:
        tiny = TinyStudentConfig(**dict(backend_cfg.options.get("tiny") or {}))
    except TypeError as err:
        raise ConfigError(
            f"{role}.options.tiny: {err}; see TinyStudentConfig for the fields"
        ) from None
    build_tiny_student(path, tiny, seed=seed)
    return str(path)


def _generator_model(config: RunConfig, store, run_id: str, resume: str | None, models_dir: Path):
    """The LLM generator's backend config and model-version id: a resumed run's generator
    continues from its latest trained version; model 'tiny' builds one (seeded)."""
    if config.generator.kind != "llm" or config.generator.backend is None:
        return None, None
    cfg, version = config.generator.backend, f"{run_id}-generator-v0"
    trained = (
        [v for v in store.model_versions(run_id, "generator") if v.status in ("base", "promoted")]
        if resume
        else []
    )
    if trained:
        latest = max(trained, key=lambda v: v.number)
        cfg, version = cfg.model_copy(update={"model": latest.path}), latest.id
    else:
        cfg = cfg.model_copy(
            update={
                "model": _local_model(
                    cfg, models_dir / "generator-v0", config.seed + 1, "generator.backend"
                )
            }
        )
    if cfg.kind == "transformers":
        cfg = cfg.model_copy(
            update={"options": {k: v for k, v in cfg.options.items() if k != "tiny"}}
        )
    return cfg, version


async def _check_reachable(backend) -> None:
    check = getattr(backend, "check", None)
    if check is not None:
        await check()


@contextlib.asynccontextmanager
async def _checkpointer(db_url: str, run_dir: Path) -> AsyncIterator[Any]:
    if db_url.startswith("postgresql"):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        conn = db_url.replace("postgresql+psycopg://", "postgresql://")
        async with AsyncPostgresSaver.from_conn_string(conn) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(run_dir / "checkpoints.sqlite")) as saver:
            yield saver


async def run_loop(
    config: RunConfig,
    *,
    resume: str | None = None,
    emit: EventSink = _no_events,
    episode_graph: Callable[[Agents], Any] = build_episode_graph,
) -> RunResult:
    """Start a new run from `config`, or resume run `resume` (its stored config wins).

    `episode_graph` builds the graph each episode runs through (default: the ready-made one);
    a custom graph must return {"record": EpisodeRecord} like `graphs.episode.record`.
    """
    t0 = time.perf_counter()
    store = open_run_store(config.db_url())
    db_url = config.db_url()
    if resume is not None:
        run = store.get_run(resume)
        stored = config_from_dict(run.config, f"run {resume}")
        config = stored.model_copy(update={"db": db_url})
        run_id = resume
    else:
        run_id = _new_run_id()
    run_dir = Path(config.workdir) / "runs" / run_id
    models_dir = run_dir / "models"

    # Validate every name, endpoint and model before writing anything.
    _check_backend_kinds(config)
    domain = build_domain_from(config)
    arms = _domain_arms(config, domain)
    _check_refinement(config, domain)
    teacher_backend = build_backend(config.teacher, domain)
    await _check_reachable(teacher_backend)
    gen_cfg, gen_version = _generator_model(config, store, run_id, resume, models_dir)
    gen_backend = build_backend(gen_cfg, domain) if gen_cfg is not None else None
    if gen_backend is not None and hasattr(gen_backend, "version_id"):
        gen_backend.version_id = gen_version
    judge_backend = (
        build_backend(config.verifier.backend, domain)
        if config.verifier.kind == "llm_judge"
        else None
    )
    for b in (gen_backend, judge_backend):
        if b is not None:
            await _check_reachable(b)

    if resume is None:
        base_path = _local_model(config.student, models_dir / "student-v0", config.seed, "student")
        student_path, student_version = base_path, f"{run_id}-student-v0"
    else:
        promoted = [
            v for v in store.model_versions(run_id, "student") if v.status in ("base", "promoted")
        ]
        if not promoted:
            raise PedagogyError(
                f"run {run_id} has no student model version; it cannot be resumed — start a new run"
            )
        latest = max(promoted, key=lambda v: v.number)
        student_path, student_version = latest.path, latest.id
    backend_opts = {k: v for k, v in config.student.options.items() if k != "tiny"}
    student_backend = build_backend(
        config.student.model_copy(update={"model": student_path, "options": backend_opts}), domain
    )
    if hasattr(student_backend, "version_id"):
        student_backend.version_id = student_version

    if resume is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        store.create_run(RunRecord(run_id, config.name, config.model_dump(), config.seed))
        store.add_model_version(
            ModelVersionRecord(
                id=student_version,
                run_id=run_id,
                role="student",
                number=0,
                path=student_path,
                status="base",
            )
        )
        if config.generator.train and gen_backend is not None:
            store.add_model_version(
                ModelVersionRecord(
                    id=gen_version,
                    run_id=run_id,
                    role="generator",
                    number=0,
                    path=gen_backend.model,
                    status="base",
                )
            )
    else:
        store.set_run_status(run_id, "running")
    record_environment(run_dir, resumed=resume is not None)
    emit(
        "run_started",
        {"run_id": run_id, "resumed": resume is not None, "db": store.url, "run_dir": str(run_dir)},
    )

    from pedagogy.training.evaluate import build_heldout
    from pedagogy.training.sft import warm_up

    warm_up()  # TRL's imports (~4 s) in a background thread while round 1 runs its episodes

    heldout = build_heldout(domain, arms, config.evaluation.heldout_per_arm, config.evaluation.seed)
    session = Session(
        config=config,
        run_id=run_id,
        store=store,
        domain=domain,
        agents=Agents(
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
            verifier=Verifier(domain, judge_backend),
            reattempt=config.episodes.reattempt,
        ),
        generator=Generator(
            domain,
            gen_backend,
            poses=config.generator.pose,
            max_tokens=gen_cfg.max_tokens if gen_cfg else 96,
            temperature=gen_cfg.temperature if gen_cfg else 0.0,
        ),
        student_backend=student_backend,
        heldout=heldout,
        arms=arms,
        models_dir=models_dir,
        emit=emit,
        graph_factory=episode_graph,
    )
    status = "failed"
    try:
        async with _checkpointer(db_url, run_dir) as saver:
            graph = build_loop_graph(session, saver)
            cfg = {
                "configurable": {"thread_id": run_id},
                "recursion_limit": 10 * config.rounds + 20,
            }
            initial: LoopState = {
                "round": 0,
                "student_version": student_version,
                "student_path": student_path,
            }
            snapshot = await graph.aget_state(cfg) if resume is not None else None
            if snapshot is None or not snapshot.values:
                await graph.ainvoke(initial, cfg)
            else:
                # Always continue, even when `snapshot.next` is empty: a kill between a node's
                # saved writes and the next checkpoint leaves next=() with the graph unfinished.
                # LangGraph reuses the saved writes, and on a finished graph this runs nothing.
                await graph.ainvoke(None, cfg)
        status = "completed"
        store.set_run_status(run_id, status)
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "interrupted"
        store.set_run_status(run_id, status, "interrupted by the user; continue with --resume")
        raise
    except PedagogyError as err:
        store.set_run_status(run_id, "failed", str(err))
        raise
    except Exception as err:
        store.set_run_status(run_id, "failed", f"{type(err).__name__}: {err}")
        raise
    finally:
        for backend in (student_backend, gen_backend):
            aclose = getattr(backend, "aclose", None)
            if aclose is not None:
                await aclose()
    result = RunResult(run_id, status, store.url, run_dir, time.perf_counter() - t0)
    emit("run_finished", {"run_id": run_id, "status": status, "seconds": result.seconds})
    return result
