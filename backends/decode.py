"""Batched decoding that stops each row at its own end.

`model.generate` runs every row of a batch until the last one finishes: a short answer in a
batch with one long answer pays for the long one's decoding steps. `decode` keeps the KV cache
itself and drops finished rows from the batch (the cache, the attention mask and the positions
are cut down to the live rows), so a step costs what the rows still writing need. Greedy rows
take the arg-max; a row with a temperature draws from its own seeded generator, so a seeded
request writes the same text whatever its batch mates are.

A row can also end at its text (`TextStops`, the rules of `stop_index`): at a stop string, or
after its first complete line that starts with one of given prefixes (an acting step ends after
its action line, `ChatRequest.stop_lines`). A row that stops there decodes nothing further.

It reproduces greedy `generate` for a model whose generation config adds no logits processing
(`plain_generation_config`); for a model that asks for more (repetition penalty, banned words,
a minimum length, ...), the backend keeps calling `generate`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["TextStops", "decode", "length_groups", "plain_generation_config", "stop_index"]

# What `str.splitlines` breaks lines at: a line ends at any of them (as `parse_action` reads it).
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

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


def stop_index(text: str, strings: Sequence[str] = (), lines: Sequence[str] = ()) -> int | None:
    """Where a reply ends under its stop rules, None while none has matched: before the first
    of the stop `strings`, or just after the first complete line (one its line break ended, as
    `str.splitlines` breaks lines) that starts, leading whitespace aside, with one of the
    prefixes `lines`, whichever comes first.

    Text written after that point cannot move it: greedy decoding that stops there keeps
    everything a longer decode would have kept."""
    cut: int | None = None
    for s in strings:
        i = text.find(s) if s else -1
        if i != -1 and (cut is None or i < cut):
            cut = i
    prefixes = tuple(p for p in lines if p)
    if prefixes:
        end = 0
        for line in text.splitlines(keepends=True):
            end += len(line)
            if cut is not None and end > cut:
                break
            if line.strip().startswith(prefixes) and line.splitlines()[0] != line:
                return end
    return cut


_PIECES: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


def _pieces(tokenizer: Any) -> list[str]:
    """Each token id's text on its own (cached per tokenizer)."""
    try:
        pieces = _PIECES.get(tokenizer)
    except TypeError:  # a tokenizer that cannot be a weak key is decoded every time
        pieces = None
    if pieces is None:
        ids = [[i] for i in range(len(tokenizer))]
        pieces = tokenizer.batch_decode(ids, skip_special_tokens=True)
        try:
            _PIECES[tokenizer] = pieces
        except TypeError:
            pass
    return pieces


class TextStops:
    """The text stop rules of a batch's rows (`stop_index`), for `decode` and after it.

    `rules[i]` is row i's (stop strings, line prefixes). A rule can only start to match at a
    token that writes a line break (line prefixes), the last character of a stop string, or a
    part of a character; the row's text is decoded at such tokens alone, so most tokens cost a
    set lookup."""

    def __init__(self, tokenizer: Any, rules: Sequence[tuple[Sequence[str], Sequence[str]]]):
        self.tokenizer = tokenizer
        self.rules = {
            i: (tuple(s for s in strings if s), tuple(p for p in lines if p))
            for i, (strings, lines) in enumerate(rules)
        }
        self.rules = {i: rule for i, rule in self.rules.items() if rule[0] or rule[1]}
        chars = {"\ufffd"}
        every = False
        for strings, lines in self.rules.values():
            chars.update(LINE_BREAKS if lines else "")
            chars.update(s[-1] for s in strings)
            # A tokenizer may write a space only before the next piece (sentencepiece): a stop
            # string that ends in one is looked for after every token.
            every = every or any(s[-1].isspace() and s[-1] not in LINE_BREAKS for s in strings)
        self.triggers: set[int] | None = None
        if self.rules and not every:
            pieces = _pieces(tokenizer)
            self.triggers = {i for i, p in enumerate(pieces) if any(c in chars for c in p)}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def text(self, row: int, tokens: Sequence[int]) -> tuple[str, bool]:
        """The row's text cut where its rule ends it, and whether the rule did."""
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True)
        rule = self.rules.get(row)
        cut = None if rule is None else stop_index(text, *rule)
        return (text, False) if cut is None else (text[:cut], True)

    def ended(self, row: int, tokens: Sequence[int]) -> bool:
        """Whether the row's rule ends it at its last token (`decode`'s `stop`)."""
        if row not in self.rules or not tokens:
            return False
        if self.triggers is not None and tokens[-1] not in self.triggers:
            return False
        return self.text(row, tokens)[1]

    def length(self, row: int, tokens: Sequence[int]) -> int | None:
        """How many of the row's tokens its rule keeps: up to the first at which it ends the
        row; None if it never does."""
        if row not in self.rules:
            return None
        for k, token in enumerate(tokens):
            if self.triggers is None or token in self.triggers:
                if self.text(row, tokens[: k + 1])[1]:
                    return k + 1
        return None


def decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    *,
    limits: Sequence[int],
    eos_token_id: int,
    samplers: dict[int, tuple[float, Any]] | None = None,
    stop: Callable[[int, list[int]], bool] | None = None,
) -> list[list[int]]:
    """New tokens per row (EOS included where a row ended on it), at most `limits[i]` each.

    `input_ids` are left-padded prompts with their `attention_mask`; `samplers` maps a row to
    (temperature, torch.Generator) for rows that sample instead of taking the arg-max; `stop`,
    called with a row and its new tokens after each token that is no EOS, ends the row there
    when it says True (`TextStops.ended`)."""
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
                if (
                    token == eos_token_id
                    or len(tokens[row]) >= limits[row]
                    or (stop is not None and stop(row, tokens[row]))
                ):
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
