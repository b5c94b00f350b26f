"""The embedded teacher model: a bigger tiny Llama trained once on the domain's worked solutions.

The scripted teacher prints the domain's solver; no model teaches in the embedded default. With
`teacher: {kind: transformers, model: tiny-teacher}` a run gets a teacher that is a model — it
generates, and it gives every token a log-probability (what on-policy distillation needs) —
without any download: a Llama deeper and wider than the tiny student, with the student's
character tokenizer (`build_char_tokenizer` is deterministic, so the two share token ids), trained
step-bounded and seeded on worked solutions drawn from the run's domain.

Built once, then reused: the model is saved with `save_pretrained` under
`<workdir>/teachers/<key>/`, `key` a hash of everything that decides its weights (its shape and
training settings, the domain and its arms, the held-out set it must not see, the format of this
module and the versions of torch, transformers, tokenizers and reasoning-gym). A build writes into
a temporary folder and renames it into place when complete, so a crash or Ctrl-C never leaves a
half-built teacher that a later run would load.

Its held-out set is the run's own (`evaluation.heldout_per_arm`, `evaluation.seed`): the teacher
never trains on those prompts, and its accuracy per level, measured there when it is built, is
directly comparable with the student's. The accuracy is kept with the model
(`pedagogy_teacher.json`) and recorded with each run that uses it.

As a teacher of explanations the tiny teacher reads what the student reads — the problem — not the
explain prompt's instructions, which a 3M-parameter character model cannot follow:
`ReadsTheProblem` gives it each explain request's problem, and, as for the scripted teacher, an
explanation style is rendered from its reply.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from pedagogy.errors import ConfigError, PedagogyError

__all__ = [
    "MANIFEST",
    "TEACHER_MODEL",
    "ReadsTheProblem",
    "TeacherModel",
    "TeacherSpec",
    "TinyTeacherConfig",
    "ensure_teacher",
    "teacher_key",
]

TEACHER_MODEL = "tiny-teacher"
"""The `teacher.model` name that builds (or loads) the embedded teacher."""
MANIFEST = "pedagogy_teacher.json"
"""Written last into a built teacher's folder: what it is, how it was made and how it did."""
FORMAT = 1
"""What this module builds; raise it when a change here changes the weights a key stands for."""
_BUILDING = ".building"
"""Under the cache root: the temporary folders of builds in progress (`<key>-<pid>-<token>`)."""
Events = Callable[[str, dict[str, Any]], None]


@dataclass
class TinyTeacherConfig:
    """The tiny teacher: its shape (a Llama like the student's, bigger) and its one training job.

    `options.tiny_teacher` in a config overrides any field."""

    # Shape: the tiny student's width, twice its depth (measured on the default chain_sum levels,
    # 2,000 steps: 4 layers of 128 beat 3 of 192 at less cost; README, "The embedded teacher")
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position: int = 256
    """Longest prompt + solution in tokens (RoPE: costs no parameters)."""

    # Training (the packed SFT loop; AdamW, warmup then cosine decay to 0)
    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    problems_per_arm: int = 4000
    """Worked solutions drawn per arm (held-out prompts left out), each arm weighted alike."""
    seed: int = 0
    """Of the weights' initialisation, the problems drawn and the order they are trained in;
    not the run's seed, so runs with different seeds share one teacher."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            want = float if f.type in ("float", float) else int
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(
                    f"tiny_teacher.{f.name} must be a number, got {value!r}; "
                    f"its default is {getattr(TinyTeacherConfig, f.name)!r}"
                )
            if want is int and value != int(value):
                raise ConfigError(f"tiny_teacher.{f.name} must be a whole number, got {value!r}")
            if f.name != "seed" and value <= 0:
                raise ConfigError(f"tiny_teacher.{f.name} must be positive, got {value!r}")
            setattr(self, f.name, want(value))
        self.shape()  # the shape's own checks (hidden size a multiple of the heads)

    @classmethod
    def from_options(cls, options: dict[str, Any] | None, where: str) -> TinyTeacherConfig:
        """From a config's `options.tiny_teacher`: an unknown key is named with the known ones."""
        options = dict(options or {})
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                raise ConfigError(
                    f"{where}.{key}: the tiny teacher has no option {key!r}; its options: "
                    f"{', '.join(known)}"
                )
        try:
            return cls(**options)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def shape(self):
        """The model's architecture, as the tiny student's factory takes it."""
        from pedagogy.training.tiny import TinyStudentConfig

        return TinyStudentConfig(
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position=self.max_position,
        )


@dataclass(frozen=True)
class TeacherSpec:
    """What besides its own config decides a teacher's weights and its held-out measure."""

    domain: dict[str, Any]
    """The domain's name and options, as the run's config gives them."""
    arms: tuple[str, ...]
    """The arms it learns ("skill@level"), as the run teaches them."""
    heldout_per_arm: int
    heldout_seed: int
    """The run's held-out set (`evaluation.heldout_per_arm`, `evaluation.seed`): never trained on,
    and where the teacher's accuracy is measured."""


@dataclass
class TeacherModel:
    """A built teacher: where it is, which it is, and how it did on the held-out set."""

    path: Path
    key: str
    heldout: dict[str, tuple[int, int]]
    """(correct, n) per arm ("skill@level") on the run's held-out problems."""
    built: bool
    """True: trained by this call; False: loaded from the cache."""
    manifest: dict[str, Any] = field(default_factory=dict)

    def accuracy(self) -> dict[str, float]:
        return {arm: (c / n if n else 0.0) for arm, (c, n) in self.heldout.items()}

    def summary(self) -> str:
        """One line: the name, the key and the held-out accuracy per arm."""
        arms = " ".join(f"{arm} {acc:.2f}" for arm, acc in self.accuracy().items())
        return f"{TEACHER_MODEL} {self.key} · held-out {arms}"


def library_versions() -> dict[str, str | None]:
    """The versions of the libraries a teacher's weights depend on (None: not installed)."""
    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "tokenizers", "reasoning-gym"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def teacher_key(config: TinyTeacherConfig, spec: TeacherSpec) -> str:
    """16 hex digits of a hash of everything that decides the teacher: its config, `spec`, this
    module's format and the library versions (a new torch may train other weights)."""
    content = {
        "format": FORMAT,
        "config": asdict(config),
        "spec": {**asdict(spec), "arms": list(spec.arms)},
        "versions": library_versions(),
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_teacher(
    root: str | Path,
    config: TinyTeacherConfig,
    spec: TeacherSpec,
    domain: Any,
    *,
    emit: Events | None = None,
) -> TeacherModel:
    """The teacher for (`config`, `spec`) under `root`: loaded when its folder is there, else
    trained, measured and saved (atomically). `emit` receives `teacher_training` (step, steps,
    loss) while it trains and `teacher_ready` (key, built, seconds, heldout) at the end."""
    emit = emit or (lambda kind, data: None)
    root = Path(root)
    key = teacher_key(config, spec)
    path = root / key
    built = not (path / MANIFEST).is_file()
    if built:
        _build(root, key, config, spec, domain, emit)
    teacher = _load(path, key, built)
    emit(
        "teacher_ready",
        {
            "key": key,
            "path": str(path),
            "built": teacher.built,
            "seconds": teacher.manifest.get("build_cpu_seconds"),
            "heldout": teacher.accuracy(),
        },
    )
    return teacher


def _load(path: Path, key: str, built: bool) -> TeacherModel:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        heldout = {arm: (int(r["correct"]), int(r["n"])) for arm, r in manifest["heldout"].items()}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PedagogyError(
            f"the cached teacher {str(path)!r} has an unreadable {MANIFEST} ({err}); delete the "
            "folder and the next run builds it again"
        ) from None
    if manifest.get("key") != key:
        raise PedagogyError(
            f"the cached teacher {str(path)!r} says it is {manifest.get('key')!r}, not {key!r}; "
            "delete the folder and the next run builds it again"
        )
    return TeacherModel(path, key, heldout, built, manifest)


def _build(
    root: Path, key: str, config: TinyTeacherConfig, spec: TeacherSpec, domain: Any, emit: Events
) -> None:
    """Train the teacher into a temporary folder and rename it to `root/key` when complete."""
    building = root / _BUILDING
    building.mkdir(parents=True, exist_ok=True)
    _remove_stale(building)
    tmp = building / f"{key}-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        manifest = train_teacher(tmp, config, spec, domain, emit)
        manifest["key"] = key
        (tmp / "model" / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.replace(tmp / "model", root / key)
        except OSError:
            if not (root / key / MANIFEST).is_file():  # not another process's finished build
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale(building: Path) -> None:
    """Remove the temporary folders of builds whose process is gone (killed mid-build)."""
    for folder in building.iterdir():
        pid = folder.name.split("-")[1] if folder.name.count("-") >= 2 else ""
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worked_solutions(
    domain: Any, arms: Sequence[str], per_arm: int, seed: int, leave_out: set[str]
) -> list[tuple[str, str]]:
    """(prompt, worked solution) pairs: `per_arm` drawn per arm (seeded), none of `leave_out`'s
    prompts; an arm the domain solves no problem of is refused with the fix."""
    from pedagogy.domains.base import parse_arm

    pairs: list[tuple[str, str]] = []
    for arm in arms:
        skill, level = parse_arm(arm)
        rng = random.Random(f"teacher:{seed}:{arm}")
        found = 0
        for _ in range(8):  # small levels: draw again until the arm has its share
            for problem in domain.generate(rng, per_arm, skill, level):
                if problem.prompt in leave_out:
                    continue
                solution = domain.solve(problem)
                if solution is not None:
                    pairs.append((problem.prompt, solution))
                    found += 1
                if found >= per_arm:
                    break
            if found >= per_arm:
                break
        if not found:
            raise ConfigError(
                f"the {TEACHER_MODEL} learns from the domain's worked solutions, and the domain "
                f"solves none of {arm}'s problems outside the held-out set; leave the arm out "
                "(curriculum.arms) or give teacher.model a model of your own (a local folder)"
            )
    return pairs


def train_teacher(
    folder: Path, config: TinyTeacherConfig, spec: TeacherSpec, domain: Any, emit: Events
) -> dict[str, Any]:
    """Build, train and measure the teacher in `folder` (its model in `folder/model`); return its
    manifest (without the key)."""
    import torch

    from pedagogy.backends.cores import free_cores
    from pedagogy.training.evaluate import build_heldout, heldout_prompts
    from pedagogy.training.packed import run_packed_sft
    from pedagogy.training.sft import SFTJobConfig
    from pedagogy.training.tiny import build_tiny_student

    cpu0, wall0 = time.process_time(), time.perf_counter()
    heldout = build_heldout(domain, spec.arms, spec.heldout_per_arm, spec.heldout_seed)
    pairs = worked_solutions(
        domain, spec.arms, config.problems_per_arm, config.seed, heldout_prompts(heldout)
    )
    threads = free_cores()
    torch.set_num_threads(threads)
    build_tiny_student(folder / "init", config.shape(), seed=config.seed)
    job = SFTJobConfig(
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        max_steps=config.steps,
        warmup_steps=config.warmup_steps,
        lr_scheduler="cosine",
        max_length=config.max_position,
        packing=True,
        seed=config.seed,
        threads=threads,
        logging_steps=max(1, config.steps // 20),
    )

    def progress(row: dict[str, float]) -> None:
        emit(
            "teacher_training",
            {"step": int(row["step"]), "steps": config.steps, "loss": float(row["loss"])},
        )

    emit("teacher_training", {"step": 0, "steps": config.steps, "examples": len(pairs)})
    result = run_packed_sft(folder / "init", folder / "model", pairs, job, progress=progress)
    shutil.rmtree(folder / "init", ignore_errors=True)
    correct, n_params = measure(folder / "model", domain, heldout)
    return {
        "model": TEACHER_MODEL,
        "format": FORMAT,
        "config": asdict(config),
        "spec": {**asdict(spec), "arms": list(spec.arms)},
        "versions": library_versions(),
        "heldout": correct,
        "parameters": n_params,
        "examples": len(pairs),
        "steps": result.steps,
        "final_loss": result.final_loss,
        "threads": threads,
        "build_cpu_seconds": round(time.process_time() - cpu0, 1),
        "build_wall_seconds": round(time.perf_counter() - wall0, 1),
    }


def measure(
    path: Path, domain: Any, heldout: dict[tuple[str, int], list[Any]]
) -> tuple[dict[str, dict[str, int]], int]:
    """{arm: {"correct", "n"}} of the model at `path` on `heldout` (greedy, as the student is
    measured), and its parameter count."""
    from pedagogy.backends.transformers import TransformersBackend, render_prompt
    from pedagogy.domains.base import arm_name
    from pedagogy.training.tiny import count_parameters

    backend = TransformersBackend(path, threads=None, device="cpu")
    out: dict[str, dict[str, int]] = {}
    for (skill, level), problems in heldout.items():
        if not problems:
            continue
        budget = max(len(domain.solve(p) or f"A:{p.answer}") for p in problems) + 8
        prompts = [
            render_prompt(backend.tokenizer, [{"role": "user", "content": p.prompt}])
            for p in problems
        ]
        texts = backend.continue_texts(prompts, max_tokens=budget)
        right = sum(domain.verify(p, t).correct for p, t in zip(problems, texts, strict=True))
        out[arm_name(skill, level)] = {"correct": int(right), "n": len(problems)}
    return out, count_parameters(backend._model)


class ReadsTheProblem:
    """A teacher model that is asked what the student is asked: each explain request's problem,
    not the explain prompt (the tiny teacher was trained on problems, and cannot follow
    instructions). Everything else — scoring, per-token log-probabilities, its tokenizer — is
    its backend's. Its replies are worked solutions: an explanation style is rendered from them
    (`follows_instructions` is False, as for the scripted teacher)."""

    follows_instructions = False

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    @property
    def version_id(self) -> str | None:
        return self.backend.version_id

    @version_id.setter
    def version_id(self, value: str | None) -> None:
        self.backend.version_id = value

    async def generate(self, requests: Sequence[Any]) -> list[Any]:
        asked = []
        for r in requests:
            if r.purpose == "refine":
                raise PedagogyError(
                    f"the {TEACHER_MODEL} cannot write new problems; use curriculum.refine_by: "
                    "domain"
                )
            if r.problem is not None and r.purpose == "explain":
                r = replace(r, messages=[{"role": "user", "content": r.problem.prompt}])
            asked.append(r)
        completions = await self.backend.generate(asked)
        for request, completion in zip(requests, completions, strict=True):
            if request.purpose == "explain" and request.problem is not None:
                completion.detail = {**completion.detail, "asked": "problem"}
        return completions
