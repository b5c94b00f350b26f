"""`onpolicy`: on-policy distillation (GKD) as a trainer under the `Trainer` protocol.

Each optimiser step takes `batch_size` of the job's prompts (every practised problem, right or
wrong; in a seeded shuffled order, cycled), samples one completion per prompt from the student
as it is now (with probability `lmbda`; otherwise it takes prompts with a verified completion
and trains on those, off-policy), has the teacher
score every completion token, and steps on the generalised JSD between them at each completion
position (`training.onpolicy`: `beta` 1.0 is the reverse KL, the student's mode-seeking
divergence; 0 the forward KL; 0.5 the symmetric JSD). The teacher is a local causal LM that
shares the student's tokenizer (the run's `teacher.kind: transformers`, e.g. the embedded
`tiny-teacher`); it is never trained.

Why not TRL's `GKDTrainer`: in TRL 1.16 it lives in `trl.experimental` (its API may change
without notice), it samples through `generate` inside its own training step with TRL's data
collator, and it hands back neither the sampled tokens nor the teacher's scores. Here every
step's samples and the teacher's log-probability of each sampled token come back with the
result (`TrainResult.samples`), and the run stores them as turns on its hash chain, so the data
that trained a version can be audited and replayed. The loss is the same mathematics as TRL's
(`training.onpolicy.generalized_jsd_loss`, tested against it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pedagogy.errors import ConfigError, TrainingError
from pedagogy.training.sft import SFTJobConfig
from pedagogy.training.trainers import Job, Progress, TrainResult

__all__ = ["OnPolicyJobConfig", "OnPolicyTrainer"]


@dataclass
class OnPolicyJobConfig(SFTJobConfig):
    """An `SFTJobConfig` (steps, batch size, learning rate, seed, ...) plus GKD's settings and
    the teacher."""

    teacher_path: str | None = None
    """A local causal LM folder sharing the student's tokenizer (required)."""
    beta: float = 1.0
    lmbda: float = 1.0
    temperature: float = 1.0
    max_new_tokens: int = 64
    """Tokens a sampled completion may take (cut there if the student has not ended it)."""
    keep_samples: int = 4
    """Sampled completions kept per step for the record (all of a step's teacher scores are
    computed; storing every one of a long job would dwarf the run)."""


class OnPolicyTrainer:
    """`onpolicy`: GKD on the job's prompts, the student sampling (see the module)."""

    kind = "onpolicy"
    data = "prompts"
    """(prompt, verified completion or None): every practised problem; the student samples."""
    config_class = OnPolicyJobConfig

    def train(
        self,
        base_path: str | Path,
        items: Sequence[tuple[str, str | None]],
        output_dir: str | Path,
        config: OnPolicyJobConfig | None = None,
        *,
        progress: Progress | None = None,
    ) -> TrainResult:
        import torch

        from pedagogy.backends.transformers import quiet_progress, render_prompt
        from pedagogy.training.onpolicy import check_gkd_settings, onpolicy_step

        config = config or OnPolicyJobConfig()
        check_gkd_settings(config.beta, config.temperature, config.lmbda)
        if not config.teacher_path:
            raise ConfigError(
                "training.kind onpolicy needs a teacher model to score the student's samples: "
                "set teacher.kind transformers (e.g. model: tiny-teacher)"
            )
        if not items:
            raise TrainingError(f"on-policy distillation of {str(base_path)!r}: no prompts")
        if config.lora:
            raise ConfigError(
                "training.kind onpolicy trains the whole student; LoRA is not supported for it "
                "yet: set training.lora false, or train with sft"
            )
        if config.max_steps is None:
            raise ConfigError("training.max_steps must be set for onpolicy (steps sample)")
        job = Job(self.kind, base_path, output_dir, config, progress)
        student, tokenizer = job.load(lora=False)
        with quiet_progress():
            from transformers import AutoModelForCausalLM

            try:
                teacher = AutoModelForCausalLM.from_pretrained(config.teacher_path)
            except Exception as e:  # noqa: BLE001
                raise TrainingError(
                    f"cannot load the teacher model {config.teacher_path!r}: {e}"
                ) from e
        device = job.device
        student.to(device)
        teacher.to(device)
        if teacher.config.vocab_size != student.config.vocab_size:
            raise ConfigError(
                f"teacher vocabulary {teacher.config.vocab_size} != student vocabulary "
                f"{student.config.vocab_size}: on-policy distillation needs a teacher that "
                "shares the student's tokenizer (the embedded tiny-teacher does)"
            )
        prompts = [render_prompt(tokenizer, [{"role": "user", "content": p}]) for p, _ in items]
        answers = [c for _, c in items]
        order = list(range(len(items)))
        random.Random(config.seed).shuffle(order)
        answered = [i for i in order if answers[i] is not None]  # for off-policy steps
        optimizer = torch.optim.AdamW(
            student.parameters(),
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            weight_decay=config.weight_decay,
        )
        samples: list[dict[str, Any]] = []
        losses: list[float] = []
        tokens = on_policy_steps = 0
        history: list[dict[str, float]] = []
        job.start()
        cursor = 0
        for step in range(config.max_steps):
            if job.out_of_time():
                break
            seed = config.seed * 1_000_003 + step
            # The draw `onpolicy_step` makes; an off-policy step takes examples with a completion
            # (none: it samples instead).
            sampled = config.lmbda >= 1.0 or random.Random(seed).random() < config.lmbda
            lmbda = config.lmbda if answered else 1.0
            pool = order if sampled or not answered else answered
            picked = [pool[(cursor + i) % len(pool)] for i in range(config.batch_size)]
            cursor += config.batch_size
            lr = config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            out = onpolicy_step(
                student,
                teacher,
                tokenizer,
                [prompts[i] for i in picked],
                optimizer,
                max_new_tokens=config.max_new_tokens,
                beta=config.beta,
                temperature=config.temperature,
                lmbda=lmbda,
                seed=seed,
                completions=None if sampled else [answers[i] or "" for i in picked],
            )
            losses.append(out.loss)
            tokens += out.tokens
            on_policy_steps += int(out.on_policy)
            row = {"step": float(step + 1), "loss": out.loss, "learning_rate": lr}
            history.append(row)
            if progress is not None:
                progress(row)
            for k in range(min(config.keep_samples, len(picked))):
                samples.append(
                    {
                        "step": step,
                        "prompt": items[picked[k]][0],
                        "completion": out.completions[k],
                        "token_ids": out.completion_ids[k],
                        "teacher_logprobs": [round(v, 6) for v in out.teacher_logprobs[k]],
                        "on_policy": out.on_policy,
                        "seed": out.seed,
                    }
                )
        job.save(student, tokenizer)
        result = job.result(
            steps=len(losses),
            train_loss=sum(losses) / len(losses) if losses else 0.0,
            n_examples=len(items),
            log_history=history,
            stopped_by_time=len(losses) < config.max_steps,
            metrics={
                "completion_tokens": float(tokens),
                "on_policy_steps": float(on_policy_steps),
                "beta": float(config.beta),
                "lmbda": float(config.lmbda),
            },
        )
        result.samples = samples
        return result
