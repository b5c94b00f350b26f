"""How the student learns, behind one seam: a small `Trainer` protocol, a registry, and the
beginning and end that every training job shares (`Job`).

A trainer turns a base model folder and data into a new model folder plus metrics:
``build_trainer("sft").train(base_path, items, output_dir, config) -> TrainResult``. What an
item is belongs to the trainer (a (prompt, completion) pair for `sft`, a `PreferencePair` for
`dpo` and `redi`, a trajectory of (text, trainable) segments or chat messages for
`trajectory_sft`); everything around the optimisation is the same for all of them and lives
here once: the clock and wall-clock budget, torch threads, loading the base (full, LoRA, or
continuing an adapter), TRL's arguments and callbacks, saving model and tokenizer, the result.

Built-ins register lazily (importing this module pulls in neither torch nor TRL); users add
their own with ``register_trainer("mine", MyTrainer)``.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pedagogy.errors import ConfigError, TrainingError
from pedagogy.registry import Registry

if TYPE_CHECKING:
    from pedagogy.training.sft import SFTJobConfig

__all__ = [
    "DATA_SHAPES",
    "Job",
    "Progress",
    "TrainResult",
    "Trainer",
    "build_trainer",
    "data_shape",
    "is_adapter_dir",
    "known_trainers",
    "load_model",
    "planned_steps",
    "register_trainer",
    "trainer_args",
    "trl_module",
    "warm_up",
]

Progress = Callable[[dict[str, Any]], None]
"""Receives each logged row (loss, learning_rate, step, ...) while a job trains."""


@dataclass
class TrainResult:
    """What a training job did."""

    out_path: Path
    steps: int
    train_loss: float
    """Mean training loss over the job (trained tokens only)."""
    seconds: float
    """Wall time of the whole job, setup and saving included."""
    setup_seconds: float
    """Model load + data preparation + trainer construction, before the first step."""
    final_loss: float | None = None
    """Loss of the last logged window."""
    stopped_by_time: bool = False
    n_examples: int = 0
    log_history: list[dict[str, float]] = field(default_factory=list)
    kind: str = ""
    """The registered name of the trainer that ran the job."""
    metrics: dict[str, float] = field(default_factory=dict)
    """What only this kind of job measures (e.g. `truncated` trajectories)."""
    samples: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """What an on-policy job sampled and how the teacher scored it (`onpolicy`), for the run to
    store as turns on its chain; [] for other jobs. Not in `to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples", None)
        d["out_path"] = str(self.out_path)
        return d


@runtime_checkable
class Trainer(Protocol):
    """Data in, a new model folder and metrics out.

    In a run (`training.kind`, `graphs.round_training`) a trainer's items are its data shape,
    `data` (an optional class attribute, one of `DATA_SHAPES`): "examples", (prompt,
    completion) pairs of verified positives, the default and `sft`'s; "preferences",
    `PreferencePair`s of a correct and a wrong completion of one prompt (`dpo`); "unpaired",
    preference pairs plus positives without a wrong partner (`redi`); "trajectories", an acting
    student's segments (`trajectory_sft`); "prompts", (prompt, completion or None) for every
    practised problem, right or wrong, with a verified completion where there is one
    (`onpolicy`: the student samples its own). A custom trainer registered by a plugin gets
    "examples" unless it says otherwise. Its job config is `config_class` filled from the
    `training` section (steps, learning rate, batch size, LoRA, seed) when that is
    `SFTJobConfig` or a subclass; else `train(config=None)`, its own defaults."""

    kind: str
    """Its registered name."""
    config_class: type
    """The job config it takes (`SFTJobConfig` or a subclass); `train(config=None)` uses its
    defaults."""

    def train(
        self,
        base_path: str | Path,
        items: Sequence[Any],
        output_dir: str | Path,
        config: Any = None,
        *,
        progress: Progress | None = None,
    ) -> TrainResult:
        """Train the model at `base_path` on `items`; save model and tokenizer to `output_dir`.

        Raises `TrainingError` for bad items, an unloadable base or a failed step."""
        ...


DATA_SHAPES = ("examples", "preferences", "unpaired", "trajectories", "prompts")
"""What a trainer's items are in a run (`Trainer`'s `data`)."""
_BUILT_IN_DATA = {
    "sft": "examples",
    "dpo": "preferences",
    "redi": "unpaired",
    "trajectory_sft": "trajectories",
    "onpolicy": "prompts",
}


def data_shape(trainer: Trainer) -> str:
    """The data shape `trainer` takes in a run (`Trainer`): its `data`, else its built-in
    kind's, else "examples"."""
    shape = getattr(trainer, "data", None) or _BUILT_IN_DATA.get(trainer.kind, "examples")
    if shape not in DATA_SHAPES:
        raise ConfigError(
            f"trainer {trainer.kind!r} asks for data {shape!r}; use one of: "
            f"{', '.join(DATA_SHAPES)}"
        )
    return shape


# -- registry -----------------------------------------------------------------------------------

TrainerFactory = Callable[..., Trainer]


def _sft(**options: Any) -> Trainer:
    from pedagogy.training.sft import SFT

    return SFT(**options)


def _dpo(**options: Any) -> Trainer:
    from pedagogy.training.preference import DPO

    return DPO(**options)


def _redi(**options: Any) -> Trainer:
    from pedagogy.training.preference import REDI

    return REDI(**options)


def _onpolicy(**options: Any) -> Trainer:
    from pedagogy.training.onpolicy_trainer import OnPolicyTrainer

    return OnPolicyTrainer(**options)


def _trajectory_sft(**options: Any) -> Trainer:
    from pedagogy.training.trajectory import TrajectorySFT

    return TrajectorySFT(**options)


_REGISTRY: Registry[TrainerFactory] = Registry(
    "trainer",
    {
        "sft": _sft,
        "dpo": _dpo,
        "redi": _redi,
        "trajectory_sft": _trajectory_sft,
        "onpolicy": _onpolicy,
    },
    register_with="register_trainer",
)
"""The trainers by name; `training.kind` names one (checked when a config loads)."""


def register_trainer(name: str, factory: TrainerFactory, *, replace: bool = False) -> None:
    """Make ``build_trainer(name, **options)`` call ``factory(**options)``, and `name` a valid
    `training.kind`."""
    _REGISTRY.register(name, factory, replace=replace)


def known_trainers() -> list[str]:
    return _REGISTRY.names()


def build_trainer(name: str, **options: Any) -> Trainer:
    """A trainer by registered name, e.g. ``build_trainer("trajectory_sft")``."""
    factory = _REGISTRY.get(name)
    try:
        trainer = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options {sorted(options)} for trainer {name!r}: {exc}") from exc
    if not isinstance(trainer, Trainer):
        raise ConfigError(
            f"the factory for trainer {name!r} returned {type(trainer).__name__}, which lacks "
            "the Trainer attributes (kind, config_class, train)"
        )
    return trainer


# -- shared plumbing ----------------------------------------------------------------------------

_warm_thread: threading.Thread | None = None
_UNBOUNDED_STEPS = 10_000_000


def warm_up(background: bool = True) -> None:
    """Import TRL/peft/datasets now (~4 s once per process), by default in a daemon thread."""
    global _warm_thread

    def _imports() -> None:
        import datasets  # noqa: F401
        import peft  # noqa: F401
        import trl  # noqa: F401

    if not background:
        _imports()
        return
    if _warm_thread is None:
        _warm_thread = threading.Thread(target=_imports, name="pedagogy-trl-import", daemon=True)
        _warm_thread.start()


def _await_warm_up() -> None:
    # Two threads importing TRL's lazy modules at once can see a half-initialised `trl`
    # ("cannot import name 'SFTTrainer'"): let the warm-up finish first.
    if _warm_thread is not None:
        _warm_thread.join()


def trl_module() -> Any:
    """`trl`, imported after the start-up warm-up (`warm_up`) has finished. A trainer must get
    TRL through this: importing it while the warm-up thread is still importing it can see a
    half-initialised `trl` ("cannot import name 'SFTTrainer'"), which failed resumed runs."""
    _await_warm_up()
    import trl

    return trl


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def load_model(base_path: Path, config: SFTJobConfig, *, lora: bool | None = None):
    """(model, tokenizer) ready to train; LoRA-wrapped when `lora` (default: `config.lora`).

    A LoRA job on an adapter directory continues that adapter; a full job on one trains the
    merged weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora = config.lora if lora is None else lora
    if not base_path.is_dir():
        raise TrainingError(
            f"base model {str(base_path)!r} is not a directory; pass a directory written by "
            "save_pretrained (e.g. from pedagogy.training.tiny.build_tiny_student)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_path, local_files_only=True)
        if is_adapter_dir(base_path):
            from peft import PeftModel

            adapter = json.loads((base_path / "adapter_config.json").read_text())
            base = AutoModelForCausalLM.from_pretrained(
                adapter["base_model_name_or_path"], local_files_only=True
            )
            model = PeftModel.from_pretrained(base, base_path, is_trainable=lora)
            if not lora:
                # Full fine-tuning from an adapter: peft hands back the merged weights frozen.
                model = model.merge_and_unload().requires_grad_(True)
        else:
            model = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True)
            if lora:
                from peft import LoraConfig, get_peft_model

                model = get_peft_model(
                    model,
                    LoraConfig(
                        r=config.lora_r,
                        lora_alpha=config.lora_alpha,
                        lora_dropout=config.lora_dropout,
                        target_modules=config.lora_target_modules,
                        task_type="CAUSAL_LM",
                    ),
                )
    except TrainingError:
        raise
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one actionable error
        raise TrainingError(
            f"cannot load base model {str(base_path)!r} for fine-tuning: {type(e).__name__}: {e}; "
            "pass a directory written by save_pretrained"
        ) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def planned_steps(config: SFTJobConfig, n_rows: int) -> int:
    """Optimiser steps of a job: `max_steps`, else unbounded under a time budget (the budget
    ends the job), else `epochs` (default 1) passes over `n_rows`."""
    if config.max_steps is not None:
        return config.max_steps
    if config.epochs is None and config.max_seconds is not None:
        return _UNBOUNDED_STEPS
    epochs = 1.0 if config.epochs is None else config.epochs
    return max(1, math.ceil(epochs * n_rows / config.batch_size))


def trainer_args(config: SFTJobConfig, out_path: Path, n_rows: int) -> dict[str, Any]:
    """The keyword arguments every TRL trainer config of a job shares (SFT, DPO, trajectories)."""
    steps = planned_steps(config, n_rows)
    return dict(
        output_dir=str(out_path / ".trainer"),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=min(config.warmup_steps, steps),
        weight_decay=config.weight_decay,
        adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2,
        max_grad_norm=config.max_grad_norm,
        max_length=config.max_length,
        # TRL defaults meant for GPUs: on CPU activation checkpointing recomputes every forward
        # (~2x slower) and bf16 buys nothing.
        activation_checkpointing=False,
        bf16=False,
        use_cpu=not _cuda(),
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )


def _callbacks(deadline: float | None, progress: Progress | None):
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        """Stop at the first step boundary past the deadline."""

        stopped = False

        def on_step_end(self, args, state, control, **kwargs):
            if deadline is not None and time.monotonic() >= deadline:
                self.stopped = True
                control.should_training_stop = True
            return control

    class LogSink(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            row = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
            row["step"] = float(state.global_step)
            self.history.append(row)
            if progress is not None:
                progress(dict(row))

    return TimeBudget(), LogSink()


class Job:
    """One training job's shared beginning and end; a trainer supplies only the middle.

    Created first thing, so `setup_seconds` and the `max_seconds` budget count from the call.
    A TRL-based trainer goes `load` -> `hf_trainer` -> `run_hf`; a hand-written loop goes
    `load` -> `start` -> its steps (checking `out_of_time`) -> `save` -> `result`.
    """

    def __init__(
        self,
        kind: str,
        base_path: str | Path,
        out_path: str | Path,
        config: SFTJobConfig,
        progress: Progress | None = None,
    ) -> None:
        self.kind, self.config, self.progress = kind, config, progress
        self.base_path, self.out_path = Path(base_path), Path(out_path)
        self.t0 = time.monotonic()
        self.deadline = None if config.max_seconds is None else self.t0 + config.max_seconds
        self.setup_seconds = 0.0
        self._budget = self._sink = None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def load(self, *, lora: bool | None = None):
        """(model, tokenizer) of the base; threads and the torch seed set from the config."""
        import torch

        from pedagogy.backends.transformers import quiet_progress

        _await_warm_up()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        torch.manual_seed(self.config.seed)  # LoRA initialisation
        with quiet_progress():
            return load_model(self.base_path, self.config, lora=lora)

    @property
    def device(self):
        import torch

        return torch.device("cuda" if _cuda() else "cpu")

    def start(self) -> None:
        """Setup is over: the first optimiser step comes next."""
        self.setup_seconds = time.monotonic() - self.t0

    # -- TRL trainers

    def hf_trainer(
        self,
        trainer_class: type,
        *,
        model: Any,
        tokenizer: Any,
        args: Any,
        dataset: Any,
        what: str,
        callbacks: Sequence[Any] = (),
        **kwargs: Any,
    ):
        """A TRL trainer wired to the job's time budget and progress, its printing off.

        `what` names the job in errors ("DPO of 'v1' on 12 pairs")."""
        from transformers import PrinterCallback, ProgressCallback

        from pedagogy.backends.transformers import quiet_progress

        self._budget, self._sink = _callbacks(self.deadline, self.progress)
        with quiet_progress():
            try:
                trainer = trainer_class(
                    model=model,
                    args=args,
                    train_dataset=dataset,
                    processing_class=tokenizer,
                    callbacks=[self._budget, self._sink, *callbacks],
                    **kwargs,
                )
            except Exception as e:  # noqa: BLE001
                raise TrainingError(f"cannot set up {what}: {type(e).__name__}: {e}") from e
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        return trainer

    def run_hf(
        self,
        trainer: Any,
        *,
        what: str,
        n_examples: int,
        adapters: list[str] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> TrainResult:
        """Train a trainer from `hf_trainer`, save its model, and report."""
        self.start()
        try:
            try:
                output = trainer.train()
            except Exception as e:  # noqa: BLE001
                raise TrainingError(f"{what} failed: {type(e).__name__}: {e}") from e
            self.save(trainer.model, trainer.processing_class, adapters=adapters)
        finally:
            shutil.rmtree(self.out_path / ".trainer", ignore_errors=True)
        history = self._sink.history if self._sink is not None else []
        return self.result(
            steps=int(trainer.state.global_step),
            train_loss=float(output.training_loss),
            n_examples=n_examples,
            log_history=history,
            stopped_by_time=bool(self._budget is not None and self._budget.stopped),
            metrics=metrics,
        )

    # -- the end

    def save(self, model: Any, tokenizer: Any, *, adapters: list[str] | None = None) -> None:
        """Model and tokenizer with `save_pretrained`; a LoRA model as its adapter (only
        `adapters` when given) unless `merge_lora`."""
        from pedagogy.backends.transformers import quiet_progress

        if self.config.lora and self.config.merge_lora:
            model = model.merge_and_unload()
            adapters = None
        try:
            self.out_path.mkdir(parents=True, exist_ok=True)
            with quiet_progress():
                if adapters is not None:
                    model.save_pretrained(self.out_path, selected_adapters=adapters)
                else:
                    model.save_pretrained(self.out_path)
                tokenizer.save_pretrained(self.out_path)
        except Exception as e:  # noqa: BLE001
            raise TrainingError(
                f"cannot save the trained model to {str(self.out_path)!r}: {e}"
            ) from e

    def result(
        self,
        *,
        steps: int,
        train_loss: float,
        n_examples: int,
        log_history: list[dict[str, float]],
        stopped_by_time: bool,
        metrics: dict[str, float] | None = None,
    ) -> TrainResult:
        losses = [row["loss"] for row in log_history if "loss" in row]
        return TrainResult(
            out_path=self.out_path,
            steps=steps,
            train_loss=train_loss,
            seconds=time.monotonic() - self.t0,
            setup_seconds=self.setup_seconds,
            final_loss=losses[-1] if losses else None,
            stopped_by_time=stopped_by_time,
            n_examples=n_examples,
            log_history=log_history,
            kind=self.kind,
            metrics=dict(metrics or {}),
        )
