"""Learning from verified mistakes: REDI and DPO on (prompt, correct, wrong) triples.

Episodes yield verified negatives as well as positives (`data.examples_from_episodes`); SFT
throws the negatives away. Two ways to use them:

- **REDI** (Reinforcement Distillation, RESEARCH.md): minimise
  ``-log pi(y+)/|y+| + alpha * log pi(y-)/|y-|`` with no reference model. The positive term is
  length-normalised SFT; the negative term pushes wrong completions down, and `alpha < 1` keeps
  that unbounded push from dominating (the paper's 0.8). A plain torch loop: both completions of
  a batch go through one padded forward, and a batch may mix pairs with plain positives (SFT
  term only), so one job can replay earlier SFT data alongside the new pairs.
- **DPO** with TRL's `DPOTrainer`, the reference model being the base: a reference forward per
  step (0.5M student, one thread: 4.0 steps/s vs REDI's 5.9) and it only sees the *margin*, so
  it can lower both completions' likelihoods at once (measured: both fell ~10 nats in 20 steps).

Both are registered trainers (`redi`, `dpo`; `run_redi` / `run_dpo` call them) and share
`SFTJobConfig`'s optimisation fields, its time budget (`max_seconds`, checked at every step
boundary), the model loading and saving and the `TrainResult` of `trainers.Job`. Completions get
the tokenizer's EOS appended and the loss covers completion tokens only, as in SFT, so a REDI/DPO
job can follow an SFT job on the same model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pedagogy.errors import ConfigError, TrainingError
from pedagogy.training.sft import SFTJobConfig
from pedagogy.training.trainers import (
    Job,
    Progress,
    TrainResult,
    planned_steps,
    trainer_args,
    trl_module,
)

__all__ = [
    "DPO",
    "DPOJobConfig",
    "REDI",
    "PreferencePair",
    "REDIJobConfig",
    "completion_logprobs",
    "preference_pairs",
    "redi_loss",
    "run_dpo",
    "run_redi",
]


class PreferencePair(NamedTuple):
    """A prompt, a verified-correct completion and a wrong one (None: a plain positive)."""

    prompt: str
    chosen: str
    rejected: str | None = None


@dataclass
class REDIJobConfig(SFTJobConfig):
    """A REDI job: `SFTJobConfig`'s optimisation fields plus the weight of the negative term."""

    alpha: float = 0.8
    """Weight of the negative term; 0 is length-normalised SFT on the positives."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_alpha(self.alpha, "REDIJobConfig.alpha")


@dataclass
class DPOJobConfig(SFTJobConfig):
    """A DPO job: `SFTJobConfig`'s optimisation fields plus DPO's temperature."""

    beta: float = 0.1
    """How far the policy may drift from the reference (higher: less)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.beta, (int, float)) and self.beta > 0):
            raise ConfigError(f"DPOJobConfig.beta must be > 0, got {self.beta!r}; try 0.1")


# -- data ---------------------------------------------------------------------------------------


def preference_pairs(items: Iterable[Any], *, unpaired: bool = False) -> list[PreferencePair]:
    """(prompt, chosen, rejected) triples from DatasetItemRecords (polarity, prompt, completion).

    Only prompts with at least one positive and one negative are paired. Duplicates are dropped;
    the i-th pair of a prompt takes its i-th positive and i-th negative, cycling the shorter list,
    so every distinct completion is used once without a quadratic cross product. Order follows
    first appearance. `unpaired=True` also returns positives of prompts without any negative as
    `(prompt, chosen, None)`, for a REDI job that mixes plain examples in.
    """
    positives: dict[str, list[str]] = {}
    negatives: dict[str, list[str]] = {}
    for i, item in enumerate(items):
        polarity = getattr(item, "polarity", None)
        prompt = getattr(item, "prompt", None)
        completion = getattr(item, "completion", None)
        if polarity not in ("positive", "negative"):
            raise TrainingError(
                f"item {i} has polarity {polarity!r}; pass DatasetItemRecords whose polarity is "
                "'positive' or 'negative'"
            )
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion:
            raise TrainingError(
                f"item {i} has prompt {prompt!r} and completion {completion!r}; both must be "
                "strings and the completion non-empty"
            )
        positives.setdefault(prompt, [])
        negatives.setdefault(prompt, [])
        bucket = positives if polarity == "positive" else negatives
        if completion not in bucket[prompt]:
            bucket[prompt].append(completion)
    pairs: list[PreferencePair] = []
    for prompt, pos in positives.items():
        neg = [c for c in negatives[prompt] if c not in pos]  # a completion judged both ways
        if pos and neg:
            n = max(len(pos), len(neg))
            pairs.extend(
                PreferencePair(prompt, pos[i % len(pos)], neg[i % len(neg)]) for i in range(n)
            )
        elif pos and unpaired:
            pairs.extend(PreferencePair(prompt, c, None) for c in pos)
    return pairs


def _check_pairs(pairs: Sequence[Any], job: str, need_rejected: bool) -> list[PreferencePair]:
    if not pairs:
        raise TrainingError(
            f"{job} got no pairs; pass at least one (prompt, chosen, rejected) triple, e.g. from "
            "preference_pairs(items)"
        )
    out = []
    for i, p in enumerate(pairs):
        if not (isinstance(p, (tuple, list)) and len(p) in (2, 3)):
            raise TrainingError(
                f"pair {i} is {p!r}; each pair must be (prompt, chosen, rejected) or "
                "(prompt, chosen) strings"
            )
        prompt, chosen, rejected = (*p, None) if len(p) == 2 else p
        if not isinstance(prompt, str) or not isinstance(chosen, str) or not chosen:
            raise TrainingError(
                f"pair {i} has prompt {prompt!r} and chosen {chosen!r}; both must be strings and "
                "the chosen completion non-empty"
            )
        if rejected is not None and (not isinstance(rejected, str) or not rejected):
            raise TrainingError(
                f"pair {i} has rejected {rejected!r}; pass a non-empty string, or None for a "
                "plain positive"
            )
        if rejected is None and need_rejected:
            raise TrainingError(
                f"pair {i} ({prompt!r}) has no rejected completion; {job} needs one for every "
                "pair: drop plain positives or train them with run_redi / run_sft"
            )
        out.append(PreferencePair(prompt, chosen, rejected))
    return out


# -- the REDI objective -------------------------------------------------------------------------


def _check_alpha(alpha: Any, name: str) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha >= 0:
        raise ConfigError(
            f"{name} must be a number >= 0, got {alpha!r}; 0.8 is the REDI paper's value, 0 turns "
            "the negative term off"
        )


def redi_loss(logp_pos_sum, len_pos, logp_neg_sum, len_neg, alpha: float = 0.8):
    """The REDI loss ``mean_i[-log pi(y+_i)/|y+_i| + alpha * log pi(y-_i)/|y-_i|]``.

    All four are 1-D tensors over the batch: summed completion log-probs and completion lengths
    in tokens. A row whose `len_neg` is 0 has no negative and contributes only its SFT term, so
    plain positives can share a batch with pairs. `alpha=0` gives the length-normalised NLL of
    the positives. There is no reference model: `alpha < 1` is what keeps minimising
    ``log pi(y-)`` (unbounded below) from swamping the positive term.
    """
    import torch

    _check_alpha(alpha, "alpha")
    tensors = (logp_pos_sum, len_pos, logp_neg_sum, len_neg)
    names = ("logp_pos_sum", "len_pos", "logp_neg_sum", "len_neg")
    shapes = {n: tuple(t.shape) for n, t in zip(names, tensors)}
    if len(set(shapes.values())) != 1 or len(logp_pos_sum.shape) != 1:
        raise TrainingError(
            f"redi_loss needs four 1-D tensors of one shape, got {shapes}; pass one entry per "
            "batch row (len_neg 0 where a row has no negative)"
        )
    if logp_pos_sum.numel() == 0:
        raise TrainingError("redi_loss got an empty batch; pass at least one row")
    if bool((len_pos <= 0).any()):
        raise TrainingError(
            f"redi_loss got positive lengths {len_pos.tolist()}; every positive completion needs "
            ">= 1 token"
        )
    dtype = logp_pos_sum.dtype
    pos = logp_pos_sum / len_pos.to(dtype)
    has_neg = len_neg > 0
    neg = torch.where(has_neg, logp_neg_sum / len_neg.to(dtype).clamp(min=1), 0.0)
    return (-pos + alpha * neg).mean()


# -- log-probs of completions -------------------------------------------------------------------


def _encode(tokenizer, prompt: str, completion: str, max_length: int) -> tuple[list[int], int]:
    """(prompt+completion+EOS ids truncated to max_length, index of the first completion token)."""
    p_ids = tokenizer(prompt)["input_ids"]
    full = list(tokenizer(prompt + completion)["input_ids"])
    if tokenizer.eos_token_id is not None:
        full.append(tokenizer.eos_token_id)
    start = 0
    while start < min(len(p_ids), len(full)) and p_ids[start] == full[start]:
        start += 1  # completion = past the shared prefix (robust to merges at the boundary)
    start = max(start, 1)
    if start >= max_length:
        raise TrainingError(
            f"prompt {prompt[:60]!r} is {start} tokens, which leaves no completion token under "
            f"max_length={max_length}; raise max_length or shorten the prompt"
        )
    return full[:max_length], start


def _batch(tokenizer, rows: Sequence[tuple[list[int], int]], device):
    """Right-padded ids, attention mask and a mask of the completion targets (shifted by one)."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.zeros((len(rows), width - 1), dtype=torch.bool)
    for i, (r, start) in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        attention[i, : len(r)] = 1
        target[i, start - 1 : len(r) - 1] = True
    return ids.to(device), attention.to(device), target.to(device)


def _logprob_sums(model, ids, attention, target):
    """(summed completion log-probs, completion lengths) per row, differentiable."""
    import torch.nn.functional as F

    # Right padding keeps positions 0..n-1 for every row without position_ids.
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    token_lp = -F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
    ).view(ids.shape[0], -1)
    mask = target.to(token_lp.dtype)
    return (token_lp * mask).sum(-1), mask.sum(-1)


def completion_logprobs(
    model,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    eos: bool = True,
    max_length: int = 256,
    batch_size: int = 64,
) -> list[tuple[float, int]]:
    """(summed log-prob, token count) of each completion given its prompt, as REDI counts them.

    With `eos` the tokenizer's EOS is part of the completion (what training sees).
    """
    import torch

    if len(prompts) != len(completions):
        raise TrainingError(
            f"completion_logprobs got {len(prompts)} prompts but {len(completions)} completions; "
            "pass one completion per prompt"
        )
    device = next(model.parameters()).device
    out: list[tuple[float, int]] = []
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(prompts), batch_size):
            rows = []
            for p, c in zip(prompts[s : s + batch_size], completions[s : s + batch_size]):
                ids, start = _encode(tokenizer, p, c, max_length)
                rows.append(
                    (ids[:-1] if not eos and tokenizer.eos_token_id is not None else ids, start)
                )
            with torch.inference_mode():
                sums, lens = _logprob_sums(model, *_batch(tokenizer, rows, device))
            out.extend((float(a), int(n)) for a, n in zip(sums, lens))
    finally:
        model.train(was_training)
    return out


# -- REDI ---------------------------------------------------------------------------------------


def _job_config(config: Any, cls: type, kind: str, extra: str) -> Any:
    config = config or cls()
    if not isinstance(config, cls):
        raise ConfigError(
            f"the {kind} trainer needs a {cls.__name__}, got {type(config).__name__}; wrap it: "
            f"{cls.__name__}(**sft_config.to_dict(), {extra})"
        )
    return config


class REDI:
    """`redi`: the REDI loss on (prompt, chosen, rejected) triples, in a plain torch loop.

    `rejected=None` (or a 2-tuple) is a plain positive trained with the SFT term only. Logged
    rows: loss, logp_chosen / logp_rejected (per-token means over the window), learning_rate,
    step."""

    kind = "redi"
    config_class = REDIJobConfig

    def train(
        self,
        base_path: str | Path,
        items: Sequence[Any],
        output_dir: str | Path,
        config: REDIJobConfig | None = None,
        *,
        progress: Progress | None = None,
    ) -> TrainResult:
        import torch
        from transformers import get_scheduler

        config = _job_config(config, REDIJobConfig, self.kind, "alpha=0.8")
        job = Job(self.kind, base_path, output_dir, config, progress)
        rows = _check_pairs(items, "the redi trainer", need_rejected=False)
        model, tokenizer = job.load()
        device = job.device
        model.to(device)
        model.train()
        encoded = [
            (
                _encode(tokenizer, p.prompt, p.chosen, config.max_length),
                None
                if p.rejected is None
                else _encode(tokenizer, p.prompt, p.rejected, config.max_length),
            )
            for p in rows
        ]
        steps = planned_steps(config, len(rows))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [
                # As transformers' Trainer: no decay on biases and norm weights.
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
            ],
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
        )
        scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer,
            num_warmup_steps=min(config.warmup_steps, steps),
            num_training_steps=steps,
        )
        job.start()

        generator = torch.Generator().manual_seed(config.seed)
        order: list[int] = []
        history: list[dict[str, float]] = []
        losses: list[float] = []
        window: dict[str, list[float]] = {"loss": [], "logp_chosen": [], "logp_rejected": []}
        step, stopped_by_time = 0, False

        def log() -> None:
            if not window["loss"]:
                return
            row = {k: sum(v) / len(v) for k, v in window.items() if v}
            row["learning_rate"] = float(scheduler.get_last_lr()[0])
            row["step"] = float(step)
            history.append(row)
            for v in window.values():
                v.clear()
            if progress is not None:
                progress(dict(row))

        try:
            while step < steps:
                if len(order) < config.batch_size:
                    order += torch.randperm(len(rows), generator=generator).tolist()
                batch, order = order[: config.batch_size], order[config.batch_size :]
                pos = [encoded[i][0] for i in batch]
                neg_at = [j for j, i in enumerate(batch) if encoded[i][1] is not None]
                neg = [encoded[batch[j]][1] for j in neg_at]
                sums, lens = _logprob_sums(model, *_batch(tokenizer, pos + neg, device))
                b = len(pos)
                neg_sum = torch.zeros(b, device=device, dtype=sums.dtype)
                neg_len = torch.zeros(b, device=device, dtype=lens.dtype)
                if neg_at:
                    index = torch.tensor(neg_at, device=device)
                    neg_sum = neg_sum.index_put((index,), sums[b:])
                    neg_len = neg_len.index_put((index,), lens[b:])
                loss = redi_loss(sums[:b], lens[:b], neg_sum, neg_len, alpha=config.alpha)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(
                        f"REDI loss became {value} at step {step}; lower learning_rate "
                        f"({config.learning_rate}) or alpha ({config.alpha})"
                    )
                losses.append(value)
                window["loss"].append(value)
                window["logp_chosen"].append(float((sums[:b] / lens[:b]).detach().mean()))
                if neg_at:
                    window["logp_rejected"].append(float((sums[b:] / lens[b:]).detach().mean()))
                if step % config.logging_steps == 0:
                    log()
                if job.out_of_time():
                    stopped_by_time = True
                    break
        except TrainingError:
            raise
        except Exception as e:  # noqa: BLE001
            raise TrainingError(
                f"REDI training of {str(job.base_path)!r} on {len(rows)} pairs failed at step "
                f"{step}: {type(e).__name__}: {e}"
            ) from e
        log()  # the last partial window

        model.eval()
        job.save(model, tokenizer)
        return job.result(
            steps=step,
            train_loss=sum(losses) / len(losses) if losses else float("nan"),
            n_examples=len(rows),
            log_history=history,
            stopped_by_time=stopped_by_time,
        )


def run_redi(
    base_path: str | Path,
    out_path: str | Path,
    pairs: Sequence[Any],
    config: REDIJobConfig | None = None,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """`REDI().train` with the output folder before the data, as callers have always passed it."""
    return REDI().train(base_path, pairs, out_path, config, progress=progress)


# -- DPO ----------------------------------------------------------------------------------------


class DPO:
    """`dpo`: TRL's `DPOTrainer` against a frozen copy of the base; every pair needs a rejected
    completion.

    Logged rows are TRL's (loss, rewards/chosen, rewards/rejected, rewards/margins, ...). With
    `lora` the frozen reference is the adapter as loaded (TRL copies it) and only the trained
    adapter is saved."""

    kind = "dpo"
    config_class = DPOJobConfig

    def train(
        self,
        base_path: str | Path,
        items: Sequence[Any],
        output_dir: str | Path,
        config: DPOJobConfig | None = None,
        *,
        progress: Progress | None = None,
    ) -> TrainResult:
        config = _job_config(config, DPOJobConfig, self.kind, "beta=0.1")
        job = Job(self.kind, base_path, output_dir, config, progress)
        rows = _check_pairs(items, "the dpo trainer", need_rejected=True)
        model, tokenizer = job.load()
        # The reference is a frozen copy of the base (a LoRA job lets TRL copy the adapter).
        ref_model = None if config.lora else job.load(lora=False)[0]

        trl = trl_module()  # after the warm-up, which imports datasets too
        import datasets

        DPOConfig, DPOTrainer = trl.DPOConfig, trl.DPOTrainer

        what = f"DPO of {str(job.base_path)!r} on {len(rows)} pairs"
        trainer = job.hf_trainer(
            DPOTrainer,
            model=model,
            tokenizer=tokenizer,
            args=DPOConfig(**trainer_args(config, job.out_path, len(rows)), beta=config.beta),
            dataset=datasets.Dataset.from_list(
                [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in rows]
            ),
            what=what,
            ref_model=ref_model,
        )
        return job.run_hf(
            trainer,
            what=what,
            n_examples=len(rows),
            adapters=["default"] if config.lora else None,
        )


def run_dpo(
    base_path: str | Path,
    out_path: str | Path,
    pairs: Sequence[Any],
    config: DPOJobConfig | None = None,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """`DPO().train` with the output folder before the data, as callers have always passed it."""
    return DPO().train(base_path, pairs, out_path, config, progress=progress)
