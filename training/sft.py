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

The job's setup and ending (loading, TRL arguments, budget, saving, the result) are shared with
the other trainers in `pedagogy.training.trainers`; this module holds the job config they all
extend and the `sft` trainer itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pedagogy.errors import TrainingError
from pedagogy.training.trainers import (
    Job,
    Progress,
    TrainResult,
    is_adapter_dir,
    trainer_args,
    trl_module,
    warm_up,
)

__all__ = [
    "SFT",
    "SFTJobConfig",
    "SFTResult",
    "build_trainer",
    "is_adapter_dir",
    "run_sft",
    "warm_up",
]


@dataclass
class SFTJobConfig:
    """One fine-tuning job. Defaults are the tuned values for the 0.5M tiny student."""

    # Optimisation (AdamW, betas (0.9, 0.98), wd 0.01, warmup, clip 1.0; chosen with
    # pedagogy.benchmarks.learning_curve: 1e-3 at batch 16 was stable across seeds)
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
    packing: bool = False
    """Train in a plain torch loop on packed batches (`pedagogy.training.packed`): each step's
    examples laid end to end, no padding, no TRL; False: TRL's `SFTTrainer`."""

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


SFTResult = TrainResult
"""The result's name from before `trainers.py`; every trainer returns a `TrainResult`."""


def _check_examples(examples: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    if not examples:
        raise TrainingError(
            "the sft trainer got no examples; pass at least one (prompt, completion) pair"
        )
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


def _sft_args(config: SFTJobConfig, out_path: Path, n_examples: int):
    return trl_module().SFTConfig(
        **trainer_args(config, out_path, n_examples),
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )


def _what(job: Job, n: int) -> str:
    return f"fine-tuning {str(job.base_path)!r} on {n} examples"


def _sft_trainer(job: Job, rows: list[dict[str, str]], callbacks: Sequence[Any] = ()):
    SFTTrainer = trl_module().SFTTrainer  # after the warm-up, which imports datasets too
    import datasets

    model, tokenizer = job.load()
    return job.hf_trainer(
        SFTTrainer,
        model=model,
        tokenizer=tokenizer,
        args=_sft_args(job.config, job.out_path, len(rows)),
        dataset=datasets.Dataset.from_list(rows),
        what=_what(job, len(rows)),
        callbacks=callbacks,
    )


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
    (Not to be confused with `pedagogy.training.trainers.build_trainer`, the registry.)
    """
    config = config or SFTJobConfig()
    rows = _check_examples(examples)
    return _sft_trainer(Job("sft", base_path, out_path, config), rows, callbacks)


class SFT:
    """`sft`: (prompt, completion) pairs, loss on the completion and EOS; TRL's SFTTrainer, or
    with `packing` a plain torch loop on packed batches."""

    kind = "sft"
    config_class = SFTJobConfig

    def train(
        self,
        base_path: str | Path,
        items: Sequence[tuple[str, str]],
        output_dir: str | Path,
        config: SFTJobConfig | None = None,
        *,
        progress: Progress | None = None,
    ) -> TrainResult:
        job = Job(self.kind, base_path, output_dir, config or SFTJobConfig(), progress)
        rows = _check_examples(items)
        if job.config.packing:
            from pedagogy.training.packed import train_packed

            return train_packed(job, [(r["prompt"], r["completion"]) for r in rows])
        trainer = _sft_trainer(job, rows)
        return job.run_hf(trainer, what=_what(job, len(rows)), n_examples=len(rows))


def run_sft(
    base_path: str | Path,
    out_path: str | Path,
    examples: Sequence[tuple[str, str]],
    config: SFTJobConfig | None = None,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """Fine-tune the model at `base_path` on (prompt, completion) pairs; save it to `out_path`.

    `progress` receives each logged row (loss, learning_rate, step, ...) as training runs.
    Raises `TrainingError` for bad input, an unloadable base model, or a failed training step.
    """
    return SFT().train(base_path, examples, out_path, config, progress=progress)
