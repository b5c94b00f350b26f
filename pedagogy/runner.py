"""Start or resume a run: validate everything first, then create the run row, then loop.

Order matters for bad input: config, names, database, endpoints and model directories are all
checked before anything is written, so a bad input leaves no run row behind; a failure after the
run row exists marks the run failed with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pedagogy.agents.roles import Generator, Student, Teacher, Verifier, make_turn
from pedagogy.backends.base import Completion
from pedagogy.backends.registry import build_backend, check_backend_kind
from pedagogy.config import RunConfig, config_from_dict
from pedagogy.domains.base import Problem, arm_name, has_parameters, parse_arm, reads_problems
from pedagogy.environment import record_environment
from pedagogy.errors import BudgetExhausted, ConfigError, PedagogyError, RunInUse
from pedagogy.graphs.agent_episode import AgentEpisodeAgents, build_agent_episode_graph
from pedagogy.graphs.episode import Agents, build_episode_graph
from pedagogy.graphs.loop import EventSink, LoopState, Session, _no_events, build_loop_graph
from pedagogy.memory.lease import Lease, new_holder
from pedagogy.memory.records import ModelVersionRecord, RunRecord
from pedagogy.parts import recorded_plugins, require_parts
from pedagogy.plugins import load_plugins


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
    """The config's domain (`pedagogy.graphs.parts.build_domain_from`, below the front door so
    that replay can build it too); kept here for callers of this name."""
    from pedagogy.graphs.parts import build_domain_from as build

    return build(config)


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


def _local_model(backend_cfg, path: Path, seed: int, role: str, context: int = 0) -> str:
    """The backend's model, or for a transformers backend with model 'tiny' a freshly built
    tiny model at `path`, its context at least `context` tokens unless set explicitly."""
    if backend_cfg.kind != "transformers" or backend_cfg.model != "tiny":
        return backend_cfg.model
    from pedagogy.training.tiny import TinyStudentConfig, build_tiny_student

    options = dict(backend_cfg.options.get("tiny") or {})
    if context > TinyStudentConfig.max_position and "max_position" not in options:
        options["max_position"] = -(-context // 64) * 64  # RoPE: a longer context costs no weights
    try:
        tiny = TinyStudentConfig(**options)
    except TypeError as err:
        raise ConfigError(
            f"{role}.options.tiny: {err}; see TinyStudentConfig for the fields"
        ) from None
    build_tiny_student(path, tiny, seed=seed)
    return str(path)


def _context(config: RunConfig) -> int:
    """Tokens an acting student's longest trajectory can take (the tiny student's characters):
    a prompt, then `max_steps` steps of `step_tokens` and their observations (bounded by the
    tools' output; 64 characters allowed per observation, longer ones are rare in the built-in
    domains); 0 for a text student, whose answers fit the default."""
    ac = config.agent
    if not ac.enabled:
        return 0
    return 128 + ac.max_steps * (ac.step_tokens + 64)


_STARTUP_SAMPLES = 16
"""Problems drawn per arm at startup, to check the teacher and size the student's context."""
_Samples = dict[str, list[tuple[Problem, str | None]]]


def _sample_arms(domain: Any, arms: list[str]) -> _Samples:
    """A few problems of each arm with the domain's solutions (None where it has none), drawn
    from a seed of their own so that the run's problems stay as they were."""
    samples = {}
    for arm in arms:
        skill, level = parse_arm(arm)
        problems = domain.generate(random.Random(f"startup:{arm}"), _STARTUP_SAMPLES, skill, level)
        samples[arm] = [(p, domain.solve(p)) for p in problems]
    return samples


def _check_teacher_explains(config: RunConfig, domain: Any, samples: _Samples) -> None:
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


def _domain_context(config: RunConfig, samples: _Samples) -> int:
    """Tokens (the tiny student's characters) the longest sampled exchange takes, with a quarter
    more for problems longer than the sample's: a re-attempt (the explanation, the prompt, then
    the answer, up to `student.max_tokens` or `evaluation.max_tokens`, with room for a whole
    solution); for an acting student, its trajectory after its prompt."""
    pairs = [pair for arm in samples.values() for pair in arm]
    if not pairs:
        return 0
    prompt = max(len(p.prompt) for p, _ in pairs)
    solution = max(len(s if s is not None else f"A:{p.answer}") for p, s in pairs)
    explanation = solution
    if config.episodes.style in ("detailed", "adaptive", "probe"):
        # "Problem: <prompt>" and "Check: <the attempt's answer and the right one>" lines
        explanation += prompt + solution + config.student.max_tokens + 32
    answer = max(
        config.student.max_tokens,
        config.evaluation.max_tokens or 0,
        math.ceil(1.25 * solution) + 8,
    )
    need = math.ceil(1.25 * (explanation + 1 + prompt)) + answer + 2  # + BOS and EOS
    if config.agent.enabled:  # `_context` allows 128 tokens for the prompt
        need = max(need, _context(config) - 128 + math.ceil(1.25 * prompt))
    return need


def _warn_cut_answers(config: RunConfig, samples: _Samples) -> None:
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


def _generator_model(
    config: RunConfig,
    store,
    run_id: str,
    resume: str | None,
    models_dir: Path,
    base_dir: Path | None = None,
):
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
        path = _stored_path(latest.path, models_dir, base_dir)
        cfg, version = cfg.model_copy(update={"model": path}), latest.id
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


def _episode_graph(
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


def _judge_settings(config: RunConfig) -> dict[str, Any]:
    """The LLM judge's call settings: its backend's `max_tokens` and `temperature`, and the
    samples per verdict."""
    backend = config.verifier.backend
    return {
        "max_tokens": backend.max_tokens,
        "temperature": backend.temperature,
        "judge_samples": config.verifier.judge_samples,
    }


async def _check_reachable(backend, role: str, checks: list[Any]) -> None:
    """The backend's startup check, if it has one (an API backend's test call): raises with the
    fix when it cannot answer; its call is kept in `checks` as a turn of `role`, recorded
    outside any episode once the run's row exists (every call is a row)."""
    check = getattr(backend, "check", None)
    if check is not None:
        completion = await check()
        if isinstance(completion, Completion):
            checks.append(make_turn(role, backend, backend.check_request(), completion, 0))


@contextlib.asynccontextmanager
async def _checkpointer(db_url: str, run_dir: Path) -> AsyncIterator[Any]:
    if db_url.startswith("postgresql"):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as err:
            raise ConfigError(
                f"a PostgreSQL run needs LangGraph's PostgreSQL checkpointer ({err.name or err} "
                "is missing); install the extra: pip install 'pedagogy[postgres]'"
            ) from None

        conn = db_url.replace("postgresql+psycopg://", "postgresql://")
        async with AsyncPostgresSaver.from_conn_string(conn) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(run_dir / "checkpoints.sqlite")) as saver:
            yield saver


def agent_tools(config: RunConfig, domain: Any) -> dict[str, Any]:
    """The tools of an acting run: `agent.tools`, else the domain's, else the calculator; each
    built with the domain's options, then the config's (the sandbox limits for `python`)."""
    from pedagogy.tools.registry import build_tool

    ac = config.agent
    names = ac.tools or list(getattr(domain, "tools", lambda: [])() or []) or ["calculator"]
    domain_options = getattr(domain, "tool_options", lambda: {})() or {}
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
    A run that fails before writing its run row leaves no new database file behind.
    """
    from pedagogy.checks import WORKDIR_FIX, require_writable_db, require_writable_folder
    from pedagogy.memory.store import discard_if_unused, new_sqlite_paths

    if resume is None:
        require_writable_folder(config.workdir, f"workdir {config.workdir}", WORKDIR_FIX)
    require_writable_db(config.db_url())
    new = new_sqlite_paths(config.db_url())
    store = open_run_store(config.db_url())
    try:
        return await _run_loop(store, config, resume, emit, episode_graph)
    except BaseException:
        discard_if_unused(store, new)
        raise


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
            run_dir, _ = _resume_dir(stored, run.config.get("db"), resume, config.db_url())
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


def _absolute(config: RunConfig) -> RunConfig:
    """`workdir` and a file `db` as absolute paths, so that the run resumes from anywhere."""
    update = {"workdir": str(Path(config.workdir).expanduser().resolve())}
    if config.db and "://" not in config.db:
        update["db"] = str(Path(config.db).expanduser().resolve())
    return config.model_copy(update=update)


def _resume_dir(
    stored: RunConfig, stored_db: Any, run_id: str, db_url: str
) -> tuple[Path, Path | None]:
    """The folder of a stored run and the directory its relative paths start from (None: they
    are absolute).

    Runs store an absolute workdir. One stored with a relative workdir (before they did) is
    looked for under the directory it was started in, recovered from where its SQLite database
    is now and the relative path it was given (e.g. `work/pedagogy.db` found at
    /a/b/work/pedagogy.db: /a/b), then under the current directory.
    """
    workdir = Path(stored.workdir).expanduser()
    if workdir.is_absolute():
        return workdir / "runs" / run_id, None
    bases = []
    db_file = _sqlite_file(db_url)
    db_file = db_file.resolve() if db_file is not None else None
    given = _sqlite_file(stored_db) if stored_db else Path(stored.workdir) / "pedagogy.db"
    if db_file is not None and given is not None and not given.is_absolute():
        parts = Path(*[p for p in given.parts if p != "."]).parts
        if parts and db_file.parts[-len(parts) :] == parts and len(db_file.parts) > len(parts):
            bases.append(db_file.parents[len(parts) - 1])
    bases.append(Path.cwd())
    for base in bases:
        if (base / workdir / "runs" / run_id).is_dir():
            return base / workdir / "runs" / run_id, base
    tried = " or ".join(str(b / workdir / "runs" / run_id) for b in bases)
    raise ConfigError(
        f"cannot find the folder of run {run_id}: it was started with the relative workdir "
        f"{stored.workdir!r} and neither {tried} exists; resume it from the directory it was "
        "started in"
    )


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL or plain path (absolute if it is given absolute); else None."""
    if "://" not in url:
        return Path(url).expanduser()
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        return Path(url[len("sqlite:///") :].split("?")[0])
    return None


def _stored_path(path: str, models_dir: Path, base_dir: Path | None) -> str:
    """A model version's stored path as this process can open it (see `Session.model_path`)."""
    p = Path(path)
    if p.is_absolute():
        return path
    for candidate in (*([base_dir / p] if base_dir else []), models_dir / p.name):
        if candidate.exists():
            return str(candidate)
    return path  # a hub id


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
        run_dir, base_dir = _resume_dir(stored, run.config.get("db"), run_id, db_url)
        workdir = str(run_dir.parent.parent)  # absolute from here on
        config = stored.model_copy(update={"db": db_url, "budget": budget, "workdir": workdir})
    else:
        run_id = _new_run_id()
        config = _absolute(config)
        run_dir = Path(config.workdir) / "runs" / run_id
    models_dir = run_dir / "models"

    # Validate every name, endpoint and model before writing anything.
    where = f"run {run_id}" if resume is not None else "config"
    load_plugins(config.plugins, where)  # a config made in Python was not loaded: import them
    if resume is not None:
        require_parts(config, where)
    config, episode_graph = _episode_graph(config, episode_graph, where)
    _check_backend_kinds(config)
    domain = build_domain_from(config)
    arms = _domain_arms(config, domain)
    _check_refinement(config, domain)
    samples = _sample_arms(domain, arms)
    _check_teacher_explains(config, domain, samples)
    _warn_cut_answers(config, samples)
    teacher_backend = build_backend(config.teacher, domain)
    checks: list[Any] = []
    await _check_reachable(teacher_backend, "teacher", checks)
    gen_cfg, gen_version = _generator_model(config, store, run_id, resume, models_dir, base_dir)
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
            await _check_reachable(b, role, checks)

    if resume is None:
        base_path = _local_model(
            config.student,
            models_dir / "student-v0",
            config.seed,
            "student",
            max(_context(config), _domain_context(config, samples)),
        )
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
        student_path = _stored_path(latest.path, models_dir, base_dir)
        student_version = latest.id
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
        # One transaction: the run, its base versions and this process's lease on it.
        store.create_run(
            RunRecord(run_id, config.name, config.model_dump(), config.seed),
            versions,
            hold.holder,
        )
        hold.started(run_id)
    else:
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
            **(_judge_settings(config) if judge_backend is not None else {}),
        ),
        reattempt=config.episodes.reattempt,
    )
    if config.agent.enabled:
        agents: Agents = acting_agents(config, domain, student_backend, teacher_backend, roles)
        if episode_graph is build_episode_graph:
            episode_graph = build_agent_episode_graph
    else:
        agents = Agents(**roles)
    session = Session(
        config=config,
        run_id=run_id,
        store=store,
        domain=domain,
        agents=agents,
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
        guard=hold.check,
        base_dir=base_dir,
    )
    status, detail = "failed", None
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
        for backend in (student_backend, gen_backend):
            aclose = getattr(backend, "aclose", None)
            if aclose is not None:
                await aclose()
    result = RunResult(run_id, status, store.url, run_dir, time.perf_counter() - t0, detail)
    emit("run_finished", {"run_id": run_id, "status": status, "seconds": result.seconds})
    return result
