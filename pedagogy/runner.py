"""Start or resume a run: validate everything first, then create the run row, then loop.

Order matters for bad input: config, names, database, endpoints and model directories are all
checked before anything is written, so a bad input leaves no run row behind; a failure after the
run row exists marks the run failed with its reason.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pedagogy import assembly, run_checks, run_models
from pedagogy.backends.registry import build_backend
from pedagogy.checkpointing import checkpointer
from pedagogy.config import RunConfig, config_from_dict
from pedagogy.environment import record_environment
from pedagogy.errors import BudgetExhausted, PedagogyError, RunInUse
from pedagogy.graphs.episode import Agents, build_episode_graph
from pedagogy.graphs.loop import EventSink, LoopState, Session, _no_events, build_loop_graph
from pedagogy.memory.lease import Lease, new_holder
from pedagogy.memory.records import ModelVersionRecord, RunRecord
from pedagogy.moved import moved_names
from pedagogy.parts import recorded_plugins, require_parts
from pedagogy.plugins import load_plugins

# What moved out of this module: the pre-flight checks (pedagogy.run_checks), the models and a
# stored run's paths (pedagogy.run_models), the agents (pedagogy.assembly) and the checkpointer
# (pedagogy.checkpointing). Their old names here keep working, with a DeprecationWarning.
__getattr__, _moved_dir, _ = moved_names(
    __name__,
    {"pedagogy.assembly": ["acting_agents", "agent_tools"]},
    {
        "_Samples": ("pedagogy.run_checks", "Samples"),
        "_STARTUP_SAMPLES": ("pedagogy.run_checks", "STARTUP_SAMPLES"),
        "_check_backend_kinds": ("pedagogy.run_checks", "check_backend_kinds"),
        "_check_reachable": ("pedagogy.run_checks", "check_reachable"),
        "_check_refinement": ("pedagogy.run_checks", "check_refinement"),
        "_check_teacher_explains": ("pedagogy.run_checks", "check_teacher_explains"),
        "_domain_arms": ("pedagogy.run_checks", "domain_arms"),
        "_episode_graph": ("pedagogy.run_checks", "resolve_episode_graph"),
        "_no_solution": ("pedagogy.run_checks", "_no_solution"),
        "_sample_arms": ("pedagogy.run_checks", "sample_arms"),
        "_warn_cut_answers": ("pedagogy.run_checks", "warn_cut_answers"),
        "_absolute": ("pedagogy.run_models", "absolute_paths"),
        "_context": ("pedagogy.run_models", "acting_context"),
        "_domain_context": ("pedagogy.run_models", "domain_context"),
        "_generator_model": ("pedagogy.run_models", "generator_model"),
        "_local_model": ("pedagogy.run_models", "local_model"),
        "_resume_dir": ("pedagogy.run_models", "resume_dir"),
        "_sqlite_file": ("pedagogy.run_models", "sqlite_file"),
        "_stored_path": ("pedagogy.run_models", "stored_path"),
        "_judge_settings": ("pedagogy.assembly", "judge_settings"),
        "_checkpointer": ("pedagogy.checkpointing", "checkpointer"),
    },
)


def __dir__() -> list[str]:
    return sorted({*globals(), *_moved_dir()})


@dataclass
class RunResult:
    run_id: str
    status: str
    db_url: str
    run_dir: Path
    seconds: float
    detail: str | None = None
    """Why a run stopped early: for `budget_exhausted`, which budget, spent vs limit."""
    already_completed: bool = False
    """A resume of a run that had completed: nothing ran, `seconds` is its recorded duration."""


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def open_run_store(db: str):
    from pedagogy.memory.store import open_store

    if "://" not in db:
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return open_store(db)


class _OpenedLate:
    """A new run's store, opened (its SQLite file created and migrated) on first use: the checks,
    the domain and the models come first, so a run killed while building them (SIGKILL: no
    cleanup runs) leaves no database file; the file appears just before the run row."""

    def __init__(self, db: str) -> None:
        self._db, self._store = db, None

    @property
    def opened(self) -> Any:
        """The store if it was opened, else None."""
        return self._store

    def __getattr__(self, name: str) -> Any:
        if self._store is None:
            self._store = open_run_store(self._db)
        return getattr(self._store, name)


def build_domain_from(config: RunConfig):
    """The config's domain (`pedagogy.graphs.parts.build_domain_from`, below the front door so
    that replay can build it too); kept here for callers of this name."""
    from pedagogy.graphs.parts import build_domain_from as build

    return build(config)


async def run_loop(
    config: RunConfig,
    *,
    resume: str | None = None,
    emit: EventSink = _no_events,
    episode_graph: Callable[[Agents], Any] = build_episode_graph,
) -> RunResult:
    """Start a new run from `config`, or resume run `resume` (its stored config wins, except
    the `budget` limits `config` sets, which replace the stored ones: a run stopped as
    `budget_exhausted` continues with a higher limit).

    `episode_graph` builds the graph each episode runs through (default: the ready-made one);
    a custom graph must return {"record": EpisodeRecord} like `graphs.episode.record`.
    A run that fails before writing its run row leaves no new database file behind, and one
    killed before it (while its checks, domain and models are built) never created one. The
    run's store is closed (its connections given back) on every exit.
    """
    from pedagogy.checks import WORKDIR_FIX, require_writable_db, require_writable_folder
    from pedagogy.memory.store import discard_if_unused, new_sqlite_paths

    if resume is None:
        require_writable_folder(config.workdir, f"workdir {config.workdir}", WORKDIR_FIX)
    require_writable_db(config.db_url())
    new = new_sqlite_paths(config.db_url())
    late = _OpenedLate(config.db_url()) if resume is None else None
    store = late if late is not None else open_run_store(config.db_url())
    finished = False
    try:
        result = await _run_loop(store, config, resume, emit, episode_graph)
        finished = True
        return result
    finally:
        # Every exit (completed, budget stop, failure, Ctrl-C) closes the store: a process that
        # runs several runs (a notebook, a service) must not keep a connection pool per run.
        opened = late.opened if late is not None else store
        if opened is None:  # never opened: nothing was created
            pass
        elif finished:
            opened.close()
        else:
            discard_if_unused(opened, new)


class _Hold:
    """This process's lease on its run (`pedagogy.memory.lease`), once it has one."""

    def __init__(self, store: Any):
        self.store, self.holder = store, new_holder()
        self.run_id: str | None = None
        self.lease: Lease | None = None

    def take(self, run_id: str) -> None:
        """Take a stored run's lease: RunInUse when a live process holds it."""
        self.store.acquire_run(run_id, self.holder)
        self.started(run_id)

    def started(self, run_id: str) -> None:
        self.run_id = run_id
        self.lease = Lease(self.store, run_id, self.holder).start()

    def check(self) -> None:
        if self.lease is not None:
            self.lease.check()

    def mark(self, status: str, reason: str) -> None:
        """Set the run's status if it still says running and is still ours."""
        if self.run_id is None or self.lease is None or self.lease.lost:
            return
        if self.store.get_run(self.run_id).status == "running":
            self.store.set_run_status(self.run_id, status, reason)

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()


async def _run_loop(
    store: Any,
    config: RunConfig,
    resume: str | None,
    emit: EventSink,
    episode_graph: Callable[[Agents], Any],
) -> RunResult:
    """`_run` under the run's lease, taken before anything is written: a second process
    resuming a live run is refused. A run that fails, even before its loop starts (a resume
    that cannot find its models), is left `failed` with the reason, never `running`."""
    hold = _Hold(store)
    if resume is not None:
        run = store.get_run(resume)
        if run.status == "completed":  # nothing left to run: say so, write nothing
            stored = config_from_dict(run.config, f"run {resume}")
            run_dir, _ = run_models.resume_dir(
                stored, run.config.get("db"), resume, config.db_url()
            )
            start, end = run.created_at, run.finished_at
            seconds = (end - start).total_seconds() if start and end else 0.0
            when = f" at {end:%Y-%m-%d %H:%M:%S} UTC" if end else ""
            done = f"run {resume} had already completed{when}; nothing was run"
            return RunResult(resume, "completed", store.url, run_dir, seconds, done, True)
        hold.take(resume)
        store.interrupt_training_jobs(resume)  # their process is gone; train restarts them
    try:
        return await _run(store, config, resume, emit, episode_graph, hold)
    except RunInUse:
        raise  # this process lost the run to another: its status is not ours to set
    except (KeyboardInterrupt, asyncio.CancelledError):
        hold.mark("interrupted", f"interrupted by the user; continue with --resume {hold.run_id}")
        raise
    except PedagogyError as err:
        hold.mark("failed", str(err))
        raise
    except Exception as err:
        hold.mark("failed", f"{type(err).__name__}: {err}")
        raise
    finally:
        hold.release()


async def _run(
    store: Any,
    config: RunConfig,
    resume: str | None,
    emit: EventSink,
    episode_graph: Callable[[Agents], Any],
    hold: _Hold,
) -> RunResult:
    t0 = time.perf_counter()
    db_url = config.db_url()
    base_dir = None
    if resume is not None:
        run = store.get_run(resume)
        stored = config_from_dict(run.config, f"run {resume}")
        raised = {k: v for k, v in config.budget.model_dump().items() if v is not None}
        budget = stored.budget.model_copy(update=raised)
        run_id = resume
        run_dir, base_dir = run_models.resume_dir(stored, run.config.get("db"), run_id, db_url)
        workdir = str(run_dir.parent.parent)  # absolute from here on
        update = {"db": db_url, "budget": budget, "workdir": workdir, "ray": config.ray}
        config = stored.model_copy(update=update)
    else:
        run_id = _new_run_id()
        config = run_models.absolute_paths(config)
        run_dir = Path(config.workdir) / "runs" / run_id
    models_dir = run_dir / "models"

    # Validate every name, endpoint and model before writing anything.
    where = f"run {run_id}" if resume is not None else "config"
    load_plugins(config.plugins, where)  # a config made in Python was not loaded: import them
    if resume is not None:
        require_parts(config, where)
    config, episode_graph = run_checks.resolve_episode_graph(config, episode_graph, where)
    run_checks.check_backend_kinds(config)
    rollouts = None
    if config.ray.address is not None:  # a round's episodes on Ray actors; Ray installed?
        from pedagogy.graphs.rollouts_ray import RayRollouts

        rollouts = RayRollouts(config.ray, assembly.build_agents, episode_graph)
    domain = build_domain_from(config)
    arms = run_checks.domain_arms(config, domain)
    run_checks.check_refinement(config, domain)
    samples = run_checks.sample_arms(domain, arms)
    run_checks.check_teacher_explains(config, domain, samples)
    run_checks.warn_cut_answers(config, samples)
    teacher = run_models.teacher_model(
        config, domain, arms, run_id, emit=emit, context=run_models.domain_context(config, samples)
    )
    teacher_backend = run_models.teacher_backend(teacher, domain)
    checks: list[Any] = []
    await run_checks.check_reachable(teacher_backend, "teacher", checks)
    gen_cfg, gen_version = run_models.generator_model(
        config, store, run_id, resume, models_dir, base_dir
    )
    gen_backend = build_backend(gen_cfg, domain) if gen_cfg is not None else None
    if gen_backend is not None and hasattr(gen_backend, "version_id"):
        gen_backend.version_id = gen_version
    judge_backend = (
        build_backend(config.verifier.backend, domain)
        if config.verifier.kind == "llm_judge"
        else None
    )
    for role, b in (("generator", gen_backend), ("verifier", judge_backend)):
        if b is not None:
            await run_checks.check_reachable(b, role, checks)

    student_path, student_version = run_models.student_model(
        config, store, run_id, resume, models_dir, base_dir, samples
    )
    backend_opts = {k: v for k, v in config.student.options.items() if k != "tiny"}
    student_backend = build_backend(
        config.student.model_copy(update={"model": student_path, "options": backend_opts}), domain
    )
    if hasattr(student_backend, "version_id"):
        student_backend.version_id = student_version

    if resume is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        config = config.model_copy(update={"plugins": recorded_plugins(config, domain)})
        versions = [
            ModelVersionRecord(
                id=student_version,
                run_id=run_id,
                role="student",
                number=0,
                path=student_path,
                status="base",
            )
        ]
        if config.generator.train and gen_backend is not None:
            versions.append(
                ModelVersionRecord(
                    id=gen_version,
                    run_id=run_id,
                    role="generator",
                    number=0,
                    path=gen_backend.model,
                    status="base",
                )
            )
        teacher_versions, teacher_decisions = run_models.teacher_records(run_id, teacher)
        # One transaction: the run, its base versions, its teacher model's held-out accuracy
        # and this process's lease on it.
        store.create_run(
            RunRecord(run_id, config.name, config.model_dump(), config.seed),
            versions + teacher_versions,
            hold.holder,
            decisions=teacher_decisions,
        )
        if isinstance(store, _OpenedLate):
            store = store.opened  # the run's own store from here on
        hold.started(run_id)
    else:
        run_models.check_resumed_teacher(store, run_id, teacher)
        store.set_run_status(run_id, "running")
        if config.budget != stored.budget:  # limits raised for the rest of the run
            store.set_run_budget(run_id, config.budget.model_dump())
    store.record_turns(run_id, checks)  # the startup checks' calls
    record_environment(run_dir, resumed=resume is not None)
    emit(
        "run_started",
        {"run_id": run_id, "resumed": resume is not None, "db": store.url, "run_dir": str(run_dir)},
    )

    from pedagogy.training.evaluate import build_heldout
    from pedagogy.training.sft import warm_up

    warm_up()  # TRL's imports (~4 s) in a background thread while round 1 runs its episodes

    heldout = build_heldout(domain, arms, config.evaluation.heldout_per_arm, config.evaluation.seed)
    agents, episode_graph = assembly.build_agents(
        config, domain, student_backend, teacher_backend, judge_backend, episode_graph
    )
    session = Session(
        config=config,
        run_id=run_id,
        store=store,
        domain=domain,
        agents=agents,
        generator=assembly.build_generator(config, domain, gen_backend, gen_cfg),
        student_backend=student_backend,
        heldout=heldout,
        arms=arms,
        models_dir=models_dir,
        emit=emit,
        graph_factory=episode_graph,
        guard=hold.check,
        base_dir=base_dir,
        rollouts=rollouts,
        teacher_path=teacher.config.model if teacher.config.kind == "transformers" else None,
    )
    status, detail = "failed", None
    try:
        async with checkpointer(db_url, run_dir) as saver:
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
        store.set_run_status(
            run_id, status, f"interrupted by the user; continue with --resume {run_id}"
        )
        raise
    except RunInUse:
        raise  # another process took the run over: its status is not ours to set
    except BudgetExhausted as err:  # a clean stop before a round: resumable
        status, detail = "budget_exhausted", str(err)
        store.set_run_status(run_id, status, detail)
    except PedagogyError as err:
        store.set_run_status(run_id, "failed", str(err))
        raise
    except Exception as err:
        store.set_run_status(run_id, "failed", f"{type(err).__name__}: {err}")
        raise
    finally:
        if rollouts is not None:
            rollouts.close()
        embedded_teacher = teacher_backend if teacher.model is not None else None
        for backend in (student_backend, gen_backend, embedded_teacher):
            aclose = getattr(backend, "aclose", None)
            if aclose is not None:
                await aclose()
    result = RunResult(run_id, status, store.url, run_dir, time.perf_counter() - t0, detail)
    emit("run_finished", {"run_id": run_id, "status": status, "seconds": result.seconds})
    return result
