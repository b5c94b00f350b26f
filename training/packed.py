"""Supervised fine-tuning in a plain torch loop on packed batches: no padding, no TRL.

Each optimiser step takes `batch_size` examples, as TRL's `SFTTrainer` does, but lays them end
to end in as few rows as the model's context allows, positions restarting at every example.
Given such position ids and no attention mask, transformers builds a block-diagonal causal mask
(no token attends across examples), so a step computes the loss and gradient of the padded
batch without the padding: in a chain_sum batch most of a padded row is padding, since the
levels differ several-fold in length. The loss is the mean over completion tokens, EOS included
(the student learns to stop), exactly as `completion_only_loss` computes it; the optimiser
(AdamW, warmup then constant or any transformers schedule, gradient clipping) is the same as the
TRL path's. Leaving TRL out also leaves out its per-job setup (dataset mapping, accelerate),
which on a tiny student costs as much as hundreds of steps.

The order of examples is drawn from `seed` alone, so a job is reproducible step for step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pedagogy.errors import TrainingError
from pedagogy.training.trainers import Job, Progress, TrainResult, planned_steps

__all__ = [
    "Encode",
    "row_width",
    "PackedBatch",
    "encode_pairs",
    "pack",
    "run_packed_sft",
    "train_packed",
    "train_packed_with",
]

Example = tuple[list[int], "int | list[int]"]
"""One example to pack: its token ids, and either how many of them are prompt (the rest is
trained on) or one label per id (-100 where the loss does not look)."""

Encode = Callable[[Any, Any, int], tuple[list[Example], dict[str, float]]]
"""(model, tokenizer, max_length) -> the job's examples and what encoding them measured."""


def encode_pairs(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int
) -> tuple[list[tuple[list[int], int]], int]:
    """[(ids, prompt_length)] of prompt + completion + EOS, and how many were cut at
    `max_length`. The prompt is whatever the tokenized prompt shares with the tokenized whole
    (as TRL does), so a token merging across the boundary counts as completion."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise TrainingError(
            "the tokenizer has no EOS token; give it one (tokenizer.eos_token) so the student "
            "learns where an answer ends"
        )
    out, truncated = [], 0
    for prompt, completion in pairs:
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = tokenizer(prompt + completion)["input_ids"]
        if not ids or ids[-1] != eos:
            ids = [*ids, eos]
        n = 0
        while n < min(len(prompt_ids), len(ids)) and prompt_ids[n] == ids[n]:
            n += 1
        if len(ids) > max_length:
            ids, truncated = ids[:max_length], truncated + 1
        out.append((ids, min(n, len(ids))))
    return out, truncated


class PackedBatch:
    """One step's examples laid end to end: `input_ids`, `position_ids` and `labels`, each
    (rows, longest row). `tokens` counts real tokens; the rest of the tensor is padding."""

    def __init__(self, input_ids: Any, position_ids: Any, labels: Any, tokens: int) -> None:
        self.input_ids, self.position_ids, self.labels, self.tokens = (
            input_ids,
            position_ids,
            labels,
            tokens,
        )

    @property
    def cells(self) -> int:
        return int(self.input_ids.numel())


def pack(
    examples: Sequence[Example], capacity: int, pad_id: int, device: Any = None
) -> PackedBatch:
    """Lay `examples` into as few rows of at most `capacity` tokens as they fill, balanced so
    the rows end near the same length (longest first, each into the emptiest row it fits; an
    example longer than `capacity` gets a row of its own). Prompt tokens (or those labelled
    -100) are not trained on, nor is an example's first token, which nothing inside the
    example predicts (as in a padded row of its own); the few padding tokens at a row's end
    form a sequence of their own, trained on by nothing."""
    import torch

    total = sum(len(ids) for ids, _ in examples)
    rows: list[list[int]] = [[] for _ in range(max(1, -(-total // capacity)))]
    used = [0] * len(rows)
    for i in sorted(range(len(examples)), key=lambda i: (-len(examples[i][0]), i)):
        size = len(examples[i][0])
        fits = [r for r in range(len(rows)) if used[r] + size <= capacity or not rows[r]]
        if not fits:
            rows.append([])
            used.append(0)
            fits = [len(rows) - 1]
        r = min(fits, key=lambda r: (used[r], r))
        rows[r].append(i)
        used[r] += size
    rows = [row for row in rows if row]
    width = max(sum(len(examples[i][0]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    tokens = 0
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            seq, trained = examples[i]
            end = at + len(seq)
            ids[r, at:end] = torch.tensor(seq)
            pos[r, at:end] = torch.arange(len(seq))
            if isinstance(trained, int):
                labels[r, at + trained : end] = ids[r, at + trained : end]
            else:
                labels[r, at:end] = torch.tensor(trained)
            labels[r, at] = -100
            at, tokens = end, tokens + len(seq)
        pos[r, at:] = torch.arange(width - at)  # the padding: one sequence of its own
    if device is not None:
        ids, pos, labels = ids.to(device), pos.to(device), labels.to(device)
    return PackedBatch(ids, pos, labels, tokens)


def row_width(examples: Sequence[Example], capacity: int, floor: int) -> int:
    """How wide a step's packed rows are: its longest example, or `floor` (twice the model's
    width) when that is more, and never more than `capacity` (the context). Attention over a
    packed row costs its width per token (the mask is block-diagonal, the product is not), so
    rows as wide as a long context cost more than padding once examples are far shorter than
    it; below about twice the model's width, fewer and fuller rows win."""
    longest = max((len(ids) for ids, _ in examples), default=1)
    return max(1, min(capacity, max(longest, floor)))


def _schedule(optimizer: Any, name: str, warmup: int, steps: int):
    from transformers import get_scheduler

    return get_scheduler(
        name, optimizer=optimizer, num_warmup_steps=min(warmup, steps), num_training_steps=steps
    )


def train_packed(
    job: Job, pairs: Sequence[tuple[str, str]], *, context: int | None = None
) -> TrainResult:
    """Run `job` (loaded, trained, saved) on (prompt, completion) pairs in packed batches."""

    def encode(model: Any, tokenizer: Any, max_length: int):
        encoded, truncated = encode_pairs(tokenizer, pairs, max_length)
        return encoded, {"truncated": float(truncated)}

    return train_packed_with(job, encode, context=context)


def train_packed_with(job: Job, encode: Encode, *, context: int | None = None) -> TrainResult:
    """Run `job` (loaded, trained, saved) on the examples `encode` makes of its model and
    tokenizer, in packed batches; `encode`'s measures join the result's metrics."""
    import torch

    config = job.config
    model, tokenizer = job.load()
    device = job.device
    model.to(device)
    capacity = context or int(getattr(model.config, "max_position_embeddings", 0) or 256)
    encoded, measured = encode(model, tokenizer, min(config.max_length, capacity))
    floor = 2 * int(getattr(model.config, "hidden_size", 128) or 128)
    if not encoded:
        raise TrainingError(f"fine-tuning {str(job.base_path)!r}: no example to train on")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps = planned_steps(config, len(encoded))
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
    )
    scheduler = _schedule(optimizer, config.lr_scheduler, config.warmup_steps, steps)
    order = torch.Generator().manual_seed(config.seed)
    batch = min(config.batch_size, len(encoded))
    queue: list[int] = []
    history: list[dict[str, float]] = []
    window: list[float] = []
    losses_sum = cells = tokens = 0.0
    done = 0
    stopped = False
    model.train()
    job.start()
    try:
        while done < steps:
            if job.out_of_time():
                stopped = True
                break
            if len(queue) < batch:  # a new pass, in a fresh order, after the rest of the last
                queue.extend(torch.randperm(len(encoded), generator=order).tolist())
            picked, queue = queue[:batch], queue[batch:]
            examples = [encoded[i] for i in picked]
            packed = pack(examples, row_width(examples, capacity, floor), pad_id, device)
            out = model(
                input_ids=packed.input_ids,
                position_ids=packed.position_ids,
                labels=packed.labels,
                use_cache=False,
            )
            loss = out.loss
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at step {done + 1}; lower "
                    f"training.learning_rate (now {config.learning_rate})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            done += 1
            value = float(loss.detach())
            losses_sum += value
            window.append(value)
            cells += packed.cells
            tokens += packed.tokens
            if done % max(1, config.logging_steps) == 0 or done == steps:
                row = {
                    "loss": sum(window) / len(window),
                    "learning_rate": float(scheduler.get_last_lr()[0]),
                    "step": float(done),
                }
                window = []
                history.append(row)
                if job.progress is not None:
                    job.progress(dict(row))
    except TrainingError:
        raise
    except Exception as e:  # noqa: BLE001 - a failed step becomes one actionable error
        raise TrainingError(
            f"fine-tuning {str(job.base_path)!r} failed at step {done + 1}: {type(e).__name__}: {e}"
        ) from e
    model.eval()
    job.save(model, tokenizer)
    return job.result(
        steps=done,
        train_loss=losses_sum / done if done else math.nan,
        n_examples=len(encoded),
        log_history=history,
        stopped_by_time=stopped,
        metrics={**measured, "padding": 1.0 - tokens / cells if cells else 0.0},
    )


def run_packed_sft(
    base_path: str | Path,
    out_path: str | Path,
    examples: Sequence[tuple[str, str]],
    config: Any = None,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """`run_sft` with `packing=True`: the plain torch loop on packed batches."""
    from dataclasses import replace

    from pedagogy.training.sft import SFT, SFTJobConfig

    config = replace(config or SFTJobConfig(), packing=True)
    return SFT().train(base_path, examples, out_path, config, progress=progress)
