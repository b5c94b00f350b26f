"""Supervised fine-tuning of the student with TRL's SFTTrainer, bounded by a time budget.

Every round of the default loop fine-tunes the student on verified (prompt, worked solution)
pairs, earlier rounds' data mixed back in (fine-tuning on new levels alone erases old ones,
MEASURED.md). Three things keep that cheap on two CPU cores:

- **No per-job overhead worth pooling.** Measured on the 0.5M student: importing TRL costs ~4 s
  once per process; building an `SFTTrainer` (dataset map, accelerate setup) costs ~0.5 s per job.
  So a trainer pool buys nothing; `warm_up()` imports TRL in a background thread at start-up so the
  first round does not pay the import on the critical path.
- **TRL's CPU-hostile defaults off.** `SFTConfig` enables activation checkpointing and bf16 by
  default; on CPU the first recomputes every forward (~2x slower) and the second buys nothing.
- **A wall-clock budget.** `max_seconds` stops training at the next step boundary (a
  `TrainerCallback`), so a round takes what the schedule gave it whatever else the machine runs.

Loss is on the completion only (`completion_only_loss=True` on a prompt/completion dataset); TRL
appends the tokenizer's EOS to every completion, so the student learns to stop.

LoRA (`lora=True`) trains a peft adapter and saves *the adapter* (a few hundred KB) plus the
tokenizer to `out_path`; `adapter_config.json` names the base model, and
`pedagogy.backends.transformers` loads such a directory by merging the adapter into its base.
Set `merge_lora=True` to save a merged full model instead. A LoRA job whose base is itself an
adapter directory continues training that adapter.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pedagogy.errors import TrainingError

__all__ = ["SFTJobConfig", "SFTResult", "build_trainer", "is_adapter_dir", "run_sft", "warm_up"]


@dataclass
class SFTJobConfig:
    """One fine-tuning job. Defaults are the tuned values for the 0.5M tiny student."""

    # Optimisation (AdamW, betas (0.9, 0.98), wd 0.01, warmup, clip 1.0; tuned in
    # bench_learning_curve: 1e-3 at batch 16 is stable across seeds, 2e-3 is not)
    learning_rate: float = 1e-3
    batch_size: int = 16
    """16 beats 32 per second on 2 cores: 21 vs 13 steps/s at about the same examples/s."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (or earlier, at `max_seconds`)."""
    epochs: float | None = None
    """Passes over the data when `max_steps` is None. None: one epoch, or with `max_seconds`
    set, as many passes as the time budget allows (the data is cycled)."""
    max_seconds: float | None = None
    """Wall-clock budget for the whole job (setup included); training stops at the next step."""
    warmup_steps: int = 20
    lr_scheduler: str = "constant_with_warmup"
    """Any transformers scheduler name; decaying ones need `max_steps`."""
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    max_grad_norm: float = 1.0
    max_length: int = 256
    """Longer prompt+completion sequences are truncated."""
    group_by_length: bool = False
    """Batch examples of similar length (less padding when levels differ a lot in length)."""

    # LoRA (peft)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | str = "all-linear"
    merge_lora: bool = False
    """Save a merged full model instead of the adapter."""

    # Runtime
    seed: int = 0
    threads: int | None = None
    """torch.set_num_threads for the job; None leaves torch's setting alone."""
    logging_steps: int = 25

    def __post_init__(self) -> None:
        from pedagogy.errors import ConfigError

        if self.learning_rate <= 0:
            raise ConfigError(f"SFTJobConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ConfigError(f"SFTJobConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(
                f"SFTJobConfig.max_steps must be >= 1 or None, got {self.max_steps}; "
                "use max_seconds to bound a job by time"
            )
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(
                f"SFTJobConfig.max_seconds must be > 0 or None, got {self.max_seconds}"
            )
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"SFTJobConfig.epochs must be > 0, got {self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SFTResult:
    """What a fine-tuning job did."""

    out_path: Path
    steps: int
    train_loss: float
    """Mean training loss over the job (completion tokens only)."""
    seconds: float
    """Wall time of the whole job, setup and saving included."""
    setup_seconds: float
    """Model load + trainer construction (dataset tokenisation) before the first step."""
    final_loss: float | None = None
    """Loss of the last logged window."""
    stopped_by_time: bool = False
    n_examples: int = 0
    log_history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_path"] = str(self.out_path)
        return d


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


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def _callbacks(deadline: float | None, progress: Callable[[dict[str, Any]], None] | None):
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


def _check_examples(examples: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    if not examples:
        raise TrainingError("run_sft got no examples; pass at least one (prompt, completion) pair")
    rows = []
    for i, ex in enumerate(examples):
        if not (isinstance(ex, (tuple, list)) and len(ex) == 2):
            raise TrainingError(
                f"example {i} is {ex!r}; each example must be a (prompt, completion) pair of strings"
            )
        prompt, completion = ex
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion:
            raise TrainingError(
                f"example {i} has prompt {prompt!r} and completion {completion!r}; "
                "both must be strings and the completion non-empty"
            )
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def _load(base_path: Path, config: SFTJobConfig):
    """(model, tokenizer) ready for the trainer; LoRA-wrapped when asked."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
            model = PeftModel.from_pretrained(base, base_path, is_trainable=config.lora)
            if not config.lora:
                # Full fine-tuning from an adapter: peft hands back the merged weights frozen.
                model = model.merge_and_unload().requires_grad_(True)
        else:
            model = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True)
            if config.lora:
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
    """The keyword arguments every TRL trainer config of a job shares (SFT, DPO)."""
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
        # TRL defaults meant for GPUs: both slow a CPU run down (see module docstring).
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


def _sft_args(config: SFTJobConfig, out_path: Path, n_examples: int):
    from trl import SFTConfig

    return SFTConfig(
        **trainer_args(config, out_path, n_examples),
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def build_trainer(
    base_path: str | Path,
    examples: Sequence[tuple[str, str]],
    config: SFTJobConfig | None = None,
    *,
    out_path: str | Path,
    callbacks: Sequence[Any] = (),
):
    """The configured `SFTTrainer` (dataset tokenised, labels masked) without training it.

    `run_sft` uses it; it is public so tests and notebooks can inspect what the trainer sees.
    """
    config = config or SFTJobConfig()
    rows = _check_examples(examples)
    base_path, out_path = Path(base_path), Path(out_path)
    if _warm_thread is not None:
        # Two threads importing TRL's lazy modules at once can see a half-initialised `trl`
        # ("cannot import name 'SFTTrainer'"): let the warm-up finish first.
        _warm_thread.join()

    import datasets
    import torch
    from transformers import PrinterCallback, ProgressCallback
    from trl import SFTTrainer

    from pedagogy.backends.transformers import quiet_progress

    if config.threads:
        torch.set_num_threads(config.threads)
    with quiet_progress():
        model, tokenizer = _load(base_path, config)
        try:
            trainer = SFTTrainer(
                model=model,
                args=_sft_args(config, out_path, len(rows)),
                train_dataset=datasets.Dataset.from_list(rows),
                processing_class=tokenizer,
                callbacks=list(callbacks),
            )
        except Exception as e:  # noqa: BLE001
            raise TrainingError(
                f"cannot set up fine-tuning of {str(base_path)!r} on {len(rows)} examples: "
                f"{type(e).__name__}: {e}"
            ) from e
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def run_sft(
    base_path: str | Path,
    out_path: str | Path,
    examples: Sequence[tuple[str, str]],
    config: SFTJobConfig | None = None,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SFTResult:
    """Fine-tune the model at `base_path` on (prompt, completion) pairs; save it to `out_path`.

    `progress` receives each logged row (loss, learning_rate, step, ...) as training runs.
    Raises `TrainingError` for bad input, an unloadable base model, or a failed training step.
    """
    from pedagogy.backends.transformers import quiet_progress

    config = config or SFTJobConfig()
    t0 = time.monotonic()
    deadline = None if config.max_seconds is None else t0 + config.max_seconds
    out_path = Path(out_path)
    time_budget, log_sink = _callbacks(deadline, progress)
    trainer = build_trainer(
        base_path, examples, config, out_path=out_path, callbacks=[time_budget, log_sink]
    )
    setup_seconds = time.monotonic() - t0
    try:
        output = trainer.train()
    except Exception as e:  # noqa: BLE001
        raise TrainingError(
            f"fine-tuning {str(base_path)!r} on {len(examples)} examples failed: "
            f"{type(e).__name__}: {e}"
        ) from e

    model = trainer.model
    if config.lora and config.merge_lora:
        model = model.merge_and_unload()
    try:
        out_path.mkdir(parents=True, exist_ok=True)
        with quiet_progress():
            model.save_pretrained(out_path)
            trainer.processing_class.save_pretrained(out_path)
    except Exception as e:  # noqa: BLE001
        raise TrainingError(f"cannot save the fine-tuned model to {str(out_path)!r}: {e}") from e
    finally:
        _remove_tree(out_path / ".trainer")

    losses = [row["loss"] for row in log_sink.history if "loss" in row]
    return SFTResult(
        out_path=out_path,
        steps=int(trainer.state.global_step),
        train_loss=float(output.training_loss),
        seconds=time.monotonic() - t0,
        setup_seconds=setup_seconds,
        final_loss=losses[-1] if losses else None,
        stopped_by_time=time_budget.stopped,
        n_examples=len(examples),
        log_history=log_sink.history,
    )


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
