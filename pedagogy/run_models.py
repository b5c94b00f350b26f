"""The models a run starts from, and where a stored run's files are.

A new run builds its tiny models (sized for the longest exchange it will see); a resumed run
continues from its latest trained versions, whose stored paths may be relative to the directory
the run was started in (runs stored before workdirs were made absolute), recovered here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pedagogy.config import RunConfig
from pedagogy.errors import ConfigError, PedagogyError
from pedagogy.run_checks import Samples


def local_model(backend_cfg, path: Path, seed: int, role: str, context: int = 0) -> str:
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


@dataclass
class Teacher:
    """The teacher's backend config as the run builds it, and for the embedded teacher model
    (`teacher.model: tiny-teacher`) the built model and its version's id."""

    config: Any
    model: Any = None
    """The `pedagogy.training.teacher_model.TeacherModel`, or None for any other teacher."""
    version_id: str | None = None


def teacher_model(
    config: RunConfig,
    domain: Any,
    arms: list[str],
    run_id: str,
    *,
    emit: Any = None,
    context: int = 0,
) -> Teacher:
    """The teacher: model 'tiny-teacher' loads the embedded teacher from
    `<workdir>/teachers/<key>/`, or builds it there (minutes, once per key), its context at
    least `context` tokens unless set explicitly; any other teacher as configured."""
    from pedagogy.training.teacher_model import (
        TEACHER_MODEL,
        TeacherSpec,
        TinyTeacherConfig,
        ensure_teacher,
    )

    cfg = config.teacher
    if cfg.kind != "transformers" or cfg.model != TEACHER_MODEL:
        return Teacher(cfg)
    options = dict(cfg.options.get("tiny_teacher") or {})
    if context > TinyTeacherConfig.max_position and "max_position" not in options:
        options["max_position"] = -(-context // 64) * 64
    tiny = TinyTeacherConfig.from_options(options, "teacher.options.tiny_teacher")
    spec = TeacherSpec(
        domain={"name": config.domain.name, "options": config.domain.options},
        arms=tuple(arms),
        heldout_per_arm=config.evaluation.heldout_per_arm,
        heldout_seed=config.evaluation.seed,
    )
    built = ensure_teacher(Path(config.workdir) / "teachers", tiny, spec, domain, emit=emit)
    rest = {k: v for k, v in cfg.options.items() if k != "tiny_teacher"}
    backend = cfg.model_copy(update={"model": str(built.path), "options": rest})
    return Teacher(backend, built, f"{run_id}-teacher-v0")


def teacher_backend(teacher: Teacher, domain: Any) -> Any:
    """The teacher's backend; the embedded teacher model's is asked each explain request's
    problem (`ReadsTheProblem`) and reports its version in every turn."""
    from pedagogy.backends.registry import build_backend

    backend = build_backend(teacher.config, domain)
    if teacher.model is None:
        return backend
    from pedagogy.training.teacher_model import ReadsTheProblem

    backend = ReadsTheProblem(backend)
    backend.version_id = teacher.version_id
    return backend


def teacher_records(run_id: str, teacher: Teacher) -> tuple[list[Any], list[Any]]:
    """A new run's records of its embedded teacher model: its version (role 'teacher', number
    0, its cache folder; the folder's files are hashed onto the run's chain) and its held-out
    accuracy per arm as `teacher_heldout` decisions of round 0; ([], []) for other teachers."""
    from pedagogy.memory.records import DecisionRecord, ModelVersionRecord
    from pedagogy.training.teacher_model import TEACHER_MODEL

    model = teacher.model
    if model is None or teacher.version_id is None:
        return [], []
    version = ModelVersionRecord(
        id=teacher.version_id,
        run_id=run_id,
        role="teacher",
        number=0,
        path=str(model.path),
        status="base",
    )
    decisions = [
        DecisionRecord(
            run_id=run_id,
            round=0,
            kind="teacher_heldout",
            policy=TEACHER_MODEL,
            subject=arm,
            value=correct / n if n else 0.0,
            detail={"version": teacher.version_id, "key": model.key, "correct": correct, "n": n},
        )
        for arm, (correct, n) in model.heldout.items()
    ]
    return [version], decisions


def check_resumed_teacher(store: Any, run_id: str, teacher: Teacher) -> None:
    """Warn when a resumed run's embedded teacher is not the one it started with (its key
    changed: other library versions, or its cached folder was replaced)."""
    import warnings

    if teacher.model is None:
        return
    stored = [v for v in store.model_versions(run_id, "teacher") if v.number == 0]
    if stored and Path(stored[0].path).name != teacher.model.key:
        warnings.warn(
            f"run {run_id} started with the teacher model {stored[0].path}; it continues with "
            f"{teacher.model.path} (its key changed: other library versions?): the rest of the "
            "run is taught by another teacher",
            stacklevel=2,
        )


def acting_context(config: RunConfig) -> int:
    """Tokens an acting student's longest trajectory can take (the tiny student's characters):
    a prompt, then `max_steps` steps of `step_tokens` and their observations (bounded by the
    tools' output; 64 characters allowed per observation, longer ones are rare in the built-in
    domains); 0 for a text student, whose answers fit the default."""
    ac = config.agent
    if not ac.enabled:
        return 0
    return 128 + ac.max_steps * (ac.step_tokens + 64)


def domain_context(config: RunConfig, samples: Samples) -> int:
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
    if config.agent.enabled:  # `acting_context` allows 128 tokens for the prompt
        need = max(need, acting_context(config) - 128 + math.ceil(1.25 * prompt))
    return need


def student_model(
    config: RunConfig,
    store: Any,
    run_id: str,
    resume: str | None,
    models_dir: Path,
    base_dir: Path | None,
    samples: Samples,
) -> tuple[str, str]:
    """The student's model path and model-version id: a new run's base model (model 'tiny'
    builds one, seeded, its context fitted to the sampled exchanges); a resumed run's latest
    base or promoted version."""
    if resume is None:
        path = local_model(
            config.student,
            models_dir / "student-v0",
            config.seed,
            "student",
            max(acting_context(config), domain_context(config, samples)),
        )
        return path, f"{run_id}-student-v0"
    promoted = [
        v for v in store.model_versions(run_id, "student") if v.status in ("base", "promoted")
    ]
    if not promoted:
        raise PedagogyError(
            f"run {run_id} has no student model version; it cannot be resumed — start a new run"
        )
    latest = max(promoted, key=lambda v: v.number)
    return stored_path(latest.path, models_dir, base_dir), latest.id


def generator_model(
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
        path = stored_path(latest.path, models_dir, base_dir)
        cfg, version = cfg.model_copy(update={"model": path}), latest.id
    else:
        cfg = cfg.model_copy(
            update={
                "model": local_model(
                    cfg, models_dir / "generator-v0", config.seed + 1, "generator.backend"
                )
            }
        )
    if cfg.kind == "transformers":
        cfg = cfg.model_copy(
            update={"options": {k: v for k, v in cfg.options.items() if k != "tiny"}}
        )
    return cfg, version


def absolute_paths(config: RunConfig) -> RunConfig:
    """`workdir` and a file `db` as absolute paths, so that the run resumes from anywhere."""
    update = {"workdir": str(Path(config.workdir).expanduser().resolve())}
    if config.db and "://" not in config.db:
        update["db"] = str(Path(config.db).expanduser().resolve())
    return config.model_copy(update=update)


def resume_dir(
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
    db_file = sqlite_file(db_url)
    db_file = db_file.resolve() if db_file is not None else None
    given = sqlite_file(stored_db) if stored_db else Path(stored.workdir) / "pedagogy.db"
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


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL or plain path (absolute if it is given absolute); else None."""
    if "://" not in url:
        return Path(url).expanduser()
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        return Path(url[len("sqlite:///") :].split("?")[0])
    return None


def stored_path(path: str, models_dir: Path, base_dir: Path | None) -> str:
    """A model version's stored path as this process can open it (see `Session.model_path`)."""
    p = Path(path)
    if p.is_absolute():
        return path
    for candidate in (*([base_dir / p] if base_dir else []), models_dir / p.name):
        if candidate.exists():
            return str(candidate)
    return path  # a hub id
