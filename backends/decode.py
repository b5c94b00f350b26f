"""Batched decoding that stops each row at its own end.

`model.generate` runs every row of a batch until the last one finishes: a short answer in a
batch with one long answer pays for the long one's decoding steps. `decode` keeps the KV cache
itself and drops finished rows from the batch (the cache, the attention mask and the positions
are cut down to the live rows), so a step costs what the rows still writing need. Greedy rows
take the arg-max; a row with a temperature draws from its own seeded generator, so a seeded
request writes the same text whatever its batch mates are.

It reproduces greedy `generate` for a model whose generation config adds no logits processing
(`plain_generation_config`); for a model that asks for more (repetition penalty, banned words,
a minimum length, ...), the backend keeps calling `generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["decode", "length_groups", "plain_generation_config"]

# Generation-config fields that change greedy decoding when set away from their defaults.
_PROCESSING = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "num_beams": (None, 1),
}


def _cache_keyword(model: Any) -> str:
    """The forward's name for the KV cache: `cache` (newer transformers) or `past_key_values`."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def length_groups(lengths: Sequence[int], ratio: float = 1.5, most: int = 256) -> list[list[int]]:
    """Row indices grouped by length, shortest first: a group holds at most `most` rows, and its
    longest row is at most `ratio` times its shortest, so little of a padded group is padding."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        group = groups[-1] if groups else None
        if group and len(group) < most and lengths[i] <= ratio * max(1, lengths[group[0]]):
            group.append(i)
        else:
            groups.append([i])
    return groups


def plain_generation_config(model: Any) -> bool:
    """Whether greedy decoding of `model` is the plain arg-max that `decode` computes."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return True
    return all(getattr(config, name, None) in allowed for name, allowed in _PROCESSING.items())


def decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    *,
    limits: Sequence[int],
    eos_token_id: int,
    samplers: dict[int, tuple[float, Any]] | None = None,
) -> list[list[int]]:
    """New tokens per row (EOS included where a row ended on it), at most `limits[i]` each.

    `input_ids` are left-padded prompts with their `attention_mask`; `samplers` maps a row to
    (temperature, torch.Generator) for rows that sample instead of taking the arg-max."""
    import torch

    samplers = samplers or {}
    n = int(input_ids.shape[0])
    tokens: list[list[int]] = [[] for _ in range(n)]
    if n == 0:
        return tokens
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    rows = list(range(n))  # the original row of each row still in the batch
    finished: set[int] = set()
    with torch.inference_mode():
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            use_cache=True,
        )
        cache, mask = _cache_of(out), attention_mask
        key = _cache_keyword(model)
        next_position = positions[:, -1:] + 1
        logits = out.logits[:, -1, :]
        while True:
            chosen = logits.argmax(dim=-1)
            for j, row in enumerate(rows):
                if row in samplers and row not in finished:
                    temperature, generator = samplers[row]
                    probs = torch.softmax(logits[j].float() / temperature, dim=-1)
                    chosen[j] = torch.multinomial(probs, 1, generator=generator)[0]
            for j, token in enumerate(chosen.tolist()):
                row = rows[j]
                if row in finished:
                    continue
                tokens[row].append(token)
                if token == eos_token_id or len(tokens[row]) >= limits[row]:
                    finished.add(row)
            live = [j for j, row in enumerate(rows) if row not in finished]
            if not live:
                break
            # Drop finished rows once they are an eighth of the batch: cutting the cache
            # costs a copy, so it is not done for every single row.
            if len(rows) - len(live) >= max(1, len(rows) // 8):
                keep = torch.tensor(live, device=mask.device)
                cache.reorder_cache(keep)
                mask, chosen, next_position = mask[keep], chosen[keep], next_position[keep]
                rows = [rows[j] for j in live]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = model(
                input_ids=chosen[:, None],
                attention_mask=mask,
                position_ids=next_position,
                use_cache=True,
                **{key: cache},
            )
            cache, logits = _cache_of(out), out.logits[:, -1, :]
            next_position = next_position + 1
    return tokens
