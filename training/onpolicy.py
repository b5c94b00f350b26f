"""On-policy distillation (GKD, Agarwal et al. 2023, https://arxiv.org/abs/2306.13649): the
student samples completions, the teacher scores every sampled token, and the student is trained
on the generalised Jensen-Shannon divergence to the teacher at every completion position.

The first increment: the loss and one optimiser step in plain torch. `generalized_jsd_loss` is
the mathematics of TRL's `GKDTrainer.generalized_jsd_loss`, written here so it does not depend on
where TRL keeps its trainer. `onpolicy_step` returns what a later trainer stores for audit: the
sampled completions and the teacher's log-probability of each sampled token.

The teacher and the student must share the tokenizer (the loss compares distributions over the
same vocabulary). Torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pedagogy.errors import ConfigError, TrainingError

__all__ = [
    "OnPolicyStep",
    "SampledBatch",
    "check_gkd_settings",
    "distillation_loss",
    "generalized_jsd_loss",
    "given_completions",
    "onpolicy_step",
    "sample_completions",
]

REDUCTIONS = ("batchmean", "sum", "mean", "none")


def check_gkd_settings(beta: float, temperature: float, lmbda: float = 1.0) -> None:
    """Raise ConfigError naming the bad value and the fix; return None when all are valid."""
    if not (isinstance(beta, int | float) and 0.0 <= beta <= 1.0):
        raise ConfigError(
            f"beta must be a number in [0, 1], got {beta!r}; use 0 for forward KL "
            "(teacher||student), 1 for reverse KL (student||teacher), 0.5 for the symmetric JSD"
        )
    if not (isinstance(temperature, int | float) and 0.0 < temperature < float("inf")):
        raise ConfigError(
            f"temperature must be a finite number > 0, got {temperature!r}; use 1.0 to sample "
            "and compare the models' own distributions"
        )
    if not (isinstance(lmbda, int | float) and 0.0 <= lmbda <= 1.0):
        raise ConfigError(
            f"lmbda must be a probability in [0, 1], got {lmbda!r}; use 1.0 for fully on-policy "
            "training (every step samples from the student), 0.0 to train on the given data only"
        )


def generalized_jsd_loss(
    student_logits, teacher_logits, labels=None, beta=0.5, temperature=1.0, reduction="batchmean"
) -> Any:
    """The generalised Jensen-Shannon divergence between teacher and student, per token.

    Matches TRL's `GKDTrainer.generalized_jsd_loss` (trl.experimental.gkd, TRL 1.16) value for
    value, without its `num_items_in_batch` argument. Logits are (batch, seq, vocab), already
    shifted so position i predicts label i; `labels` (batch, seq) masks positions equal to -100.

    With M = beta * teacher + (1 - beta) * student (both at `temperature`), the loss per token is
    beta * KL(teacher || M) + (1 - beta) * KL(student || M); beta=0 is the forward KL
    KL(teacher || student) and beta=1 the reverse KL KL(student || teacher), as in TRL.
    Reductions as TRL's: "batchmean" sums over the vocabulary and averages over unmasked positions
    (over the batch when `labels` is None); "mean" averages every element; "sum"; "none".
    """
    import torch
    import torch.nn.functional as F

    check_gkd_settings(beta, temperature)
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:  # F.kl_div(input, target) is KL(target || input)
        jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
    else:
        b = torch.tensor(beta, dtype=student_log_probs.dtype, device=student_log_probs.device)
        parts = [student_log_probs + torch.log1p(-b), teacher_log_probs + torch.log(b)]
        mixture = torch.logsumexp(torch.stack(parts), dim=0)
        kl_teacher = F.kl_div(mixture, teacher_log_probs, reduction="none", log_target=True)
        kl_student = F.kl_div(mixture, student_log_probs, reduction="none", log_target=True)
        jsd = b * kl_teacher + (1 - b) * kl_student
    if labels is not None:
        mask = labels != -100
        jsd = jsd[mask]
    if reduction == "batchmean":
        denom = mask.sum().clamp_min(1) if labels is not None else max(jsd.size(0), 1)
        return jsd.sum() / denom
    if reduction == "sum":
        return jsd.sum()
    if reduction == "mean":
        return jsd.mean()
    return jsd


@dataclass
class SampledBatch:
    """Left-padded prompts + completions cut after their first EOS. `labels`: -100 on prompt,
    padding and after the EOS; `position_ids` count real tokens, as `generate` placed them."""

    input_ids: Any
    attention_mask: Any
    position_ids: Any
    labels: Any
    prompt_width: int

    def completion_ids(self) -> list[list[int]]:
        rows = self.labels[:, self.prompt_width :]
        return [[int(t) for t in row if t != -100] for row in rows]


def _encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> Any:
    if not prompts:
        raise TrainingError("no prompts given; pass at least one prompt to sample from")
    if tokenizer.pad_token_id is None:
        raise TrainingError(
            "the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its EOS token) so "
            "prompts of different lengths can share a batch"
        )
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues each prompt at its right end
    try:
        return tokenizer(list(prompts), padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side


def _batch(sequences: Any, prompt_mask: Any, eos_id: int | None) -> SampledBatch:
    import torch

    width = prompt_mask.shape[1]
    completion = sequences[:, width:]
    keep = torch.ones_like(completion)
    if eos_id is not None and completion.shape[1]:
        is_eos = completion == eos_id
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1), completion.shape[1])
        keep = (torch.arange(completion.shape[1]) <= first.unsqueeze(1)).long()
    attention = torch.cat([prompt_mask, keep], dim=1)
    labels = sequences.clone()
    labels[attention == 0] = -100
    labels[:, :width] = -100
    positions = (attention.cumsum(-1) - 1).clamp_min(0)
    return SampledBatch(sequences, attention, positions, labels, width)


def sample_completions(
    student: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int,
) -> SampledBatch:
    """Sample one completion per prompt from `student` at `temperature`, from torch's generator
    seeded with `seed` inside `torch.random.fork_rng`: the same model, prompts and seed give the
    same completions, and the caller's random state is left as it was."""
    import torch

    check_gkd_settings(0.0, temperature)
    if int(max_new_tokens) < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}; raise it")
    enc = _encode_prompts(tokenizer, prompts)
    device = next(student.parameters()).device
    forked = [device.index or 0] if device.type == "cuda" else []
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=forked):
            torch.manual_seed(seed)
            # Plain sampling from the tempered distribution: no top-k or top-p truncation.
            sampling = {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": temperature}
            out = student.generate(
                **{k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")},
                max_new_tokens=int(max_new_tokens),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **sampling,
            )
    finally:
        student.train(was_training)
    return _batch(out.cpu(), enc["attention_mask"], tokenizer.eos_token_id)


def given_completions(
    tokenizer: Any, prompts: Sequence[str], completions: Sequence[str]
) -> SampledBatch:
    """The off-policy batch: the given completions (plus EOS) after their prompts."""
    import torch

    if len(completions) != len(prompts):
        raise TrainingError(
            f"{len(completions)} completions for {len(prompts)} prompts; give one per prompt"
        )
    enc = _encode_prompts(tokenizer, prompts)
    eos = tokenizer.eos_token_id
    rows = [tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in completions]
    width = max(len(r) for r in rows)
    tail = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=enc["input_ids"].dtype)
    for i, r in enumerate(rows):
        tail[i, : len(r)] = torch.tensor(r)
    return _batch(torch.cat([enc["input_ids"], tail], dim=1), enc["attention_mask"], eos)


def distillation_loss(
    student: Any, teacher: Any, batch: SampledBatch, *, beta: float, temperature: float
) -> tuple[Any, list[list[float]]]:
    """(the JSD on completion tokens, with the student's graph; the teacher's log-probability,
    at temperature 1, of each completion token, one list per row)."""
    import torch

    device = next(student.parameters()).device
    names = ("input_ids", "attention_mask", "position_ids")
    inputs = {k: getattr(batch, k).to(device) for k in names}
    teacher.eval()  # the teacher is never trained here: no dropout in its scores
    with torch.no_grad():
        t_device = next(teacher.parameters()).device
        teacher_logits = teacher(**{k: v.to(t_device) for k, v in inputs.items()}).logits
    student_logits = student(**inputs).logits
    if teacher_logits.shape[-1] != student_logits.shape[-1]:
        raise TrainingError(
            f"teacher vocabulary {teacher_logits.shape[-1]} != student vocabulary "
            f"{student_logits.shape[-1]}; distil only between models that share the tokenizer"
        )
    teacher_logits = teacher_logits.to(device).float()
    labels = batch.labels[:, 1:].to(device)
    loss = generalized_jsd_loss(
        student_logits[:, :-1].float(), teacher_logits[:, :-1], labels, beta, temperature
    )
    scored = torch.log_softmax(teacher_logits[:, :-1], dim=-1)
    picked = scored.gather(-1, labels.clamp_min(0)[..., None])[..., 0].cpu().tolist()
    keep = (labels != -100).cpu().tolist()
    logprobs = [[v for v, k in zip(row, mask) if k] for row, mask in zip(picked, keep)]
    return loss, logprobs


@dataclass
class OnPolicyStep:
    """What one step did: kept so a later trainer can store samples and teacher scores."""

    loss: float
    """The JSD on this step's batch, before the optimiser step."""
    tokens: int
    """Completion tokens the loss covered (EOS included)."""
    on_policy: bool
    """True when the completions were sampled from the student (probability `lmbda`)."""
    completions: list[str] = field(default_factory=list)
    completion_ids: list[list[int]] = field(default_factory=list)
    teacher_logprobs: list[list[float]] = field(default_factory=list)
    """Per row, the teacher's log-probability (temperature 1) of each completion token."""
    seed: int = 0


def onpolicy_step(
    student: Any,
    teacher: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    optimizer: Any,
    *,
    max_new_tokens: int,
    beta: float,
    temperature: float,
    lmbda: float = 1.0,
    seed: int,
    completions: Sequence[str] | None = None,
) -> OnPolicyStep:
    """One GKD step: with probability `lmbda` (drawn from `seed`) sample completions from the
    student, otherwise use the given `completions`; score them with the teacher; step the
    optimiser on the JSD over completion tokens. `temperature` is both the sampling temperature
    and the one the divergence compares the distributions at."""
    check_gkd_settings(beta, temperature, lmbda)
    on_policy = lmbda >= 1.0 or random.Random(seed).random() < lmbda
    if on_policy:
        sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
        batch = sample_completions(student, tokenizer, prompts, **sampling)
    elif completions is None:
        raise TrainingError(
            f"lmbda={lmbda} drew an off-policy step but no completions were given; pass "
            "completions=[...] (one per prompt) or set lmbda=1.0 for on-policy steps only"
        )
    else:
        batch = given_completions(tokenizer, prompts, completions)
    student.train()
    optimizer.zero_grad(set_to_none=True)
    loss, logprobs = distillation_loss(student, teacher, batch, beta=beta, temperature=temperature)
    loss.backward()
    optimizer.step()
    ids = batch.completion_ids()
    texts = [tokenizer.decode([t for t in r if t != tokenizer.eos_token_id]) for r in ids]
    tokens = sum(len(r) for r in ids)
    return OnPolicyStep(float(loss.detach()), tokens, on_policy, texts, ids, logprobs, seed)
