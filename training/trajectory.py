"""Trajectory SFT: teach a text-only student to act (think, call tools, answer) from whole
episodes, with the loss on its own tokens only.

A trajectory is a list of `Segment(text, trainable)` that concatenate to the plain-text
rendering of an episode (AGENT_SPEC "Text action format"), e.g.::

    "Q:3+4"                   prompt          masked
    "\\nC:calculator(3+4)\\n"   step 1          trained
    "O:7\\n"                   observation     masked
    "A:7"                     final step      trained, then EOS (trained)

Which newlines are trained follows what the model writes itself when the backend renders the
conversation so far (`backends.transformers.render_prompt`): after the prompt that context ends
without a newline, so the model writes it; after an observation it ends with one. A step ends
with a trained newline (the end of its action line). Only a trajectory whose last segment is
trainable gets EOS, so the student learns to stop after its answer. Observations are never
trained: the student should act on what its tools say, not learn to predict it; nor are invalid
steps (an action that did not parse) when a trajectory marks them.

(Measured on the tiny student, 300 steps on `Q:a+b` calculator trajectories, first step prompted
with the bare `Q:a+b` as the backend shows it: 50/50 well-formed calls with the newline after
the prompt trained, 0/50 with it masked.)

Tokenised segment by segment: the tokenizer's leading specials (BOS for the tiny student), then
each segment's ids without specials, labels -100 where a segment is not trainable. A sequence
longer than the model's positions (or the job's `max_length`) keeps its start; how many were
cut is warned about and returned in `TrainResult.metrics`. With `packing` (the run's
`training.packing`, on by default) the rows train in the plain torch loop on packed batches
(`pedagogy.training.packed`: each step's trajectories laid end to end, no padding, no TRL
setup); without it, TRL's SFTTrainer on the pre-tokenized `input_ids`/`labels` rows (TRL uses
given labels as they are). Both compute the mean loss over the same labelled tokens with the same
optimiser, time budget and seeding: a step-bounded job with the same seed trains the same model.

Chat records in OpenAI shape (assistant `tool_calls`, `tool` messages; what a run's export
writes) become segments with `segments_from_messages`, through the same renderer.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pedagogy.errors import TrainingError
from pedagogy.training.sft import SFTJobConfig
from pedagogy.training.trainers import Job, Progress, TrainResult, trainer_args, trl_module

__all__ = [
    "Segment",
    "TrajectoryRows",
    "TrajectorySFT",
    "build_trajectory_trainer",
    "encode_trajectory",
    "render_call",
    "run_trajectory_sft",
    "segments_from_messages",
    "segments_from_steps",
    "trajectory_rows",
]


class Segment(NamedTuple):
    """A piece of a trajectory's text and whether the loss covers it."""

    text: str
    trainable: bool


# -- rendering ----------------------------------------------------------------------------------


def render_call(name: str, arguments: Any) -> str:
    """A tool call as its action line: `C:<tool>(<raw>)` when its only argument is a one-line
    string, else `C:<tool> <json object>`.

    `arguments` is a dict or the OpenAI wire form (a JSON string); text that is no JSON object
    is kept as written, `C:<tool>(<text>)`, so a malformed call stays malformed. Without the
    tool's schema, "only argument" stands in for `agents.acting`'s "only required string
    parameter": the same line for calculator, python and retrieve with its default k."""
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            parsed = None
        # as `backends.base.parse_tool_arguments`: text that is no JSON object is kept raw
        arguments = parsed if isinstance(parsed, dict) else {"_raw": arguments}
    if isinstance(arguments, Mapping):
        if set(arguments) == {"_raw"} and isinstance(arguments["_raw"], str):
            return f"C:{name}({arguments['_raw']})"  # as `agents.acting.render_action`
        if len(arguments) == 1:
            (value,) = arguments.values()
            if isinstance(value, str) and "\n" not in value:
                return f"C:{name}({value})"
        return f"C:{name} {json.dumps(dict(arguments), ensure_ascii=False)}"
    return f"C:{name} {json.dumps(arguments, ensure_ascii=False)}"


def _segments(parts: Sequence[tuple[str, str]]) -> list[Segment]:
    """Segments of ("context" | "step" | "invalid" | "observation", text) parts, one per line as
    `render_prompt` joins them, each newline given to whoever writes it (module docstring)."""
    out = []
    for i, (kind, text) in enumerate(parts):
        last = i == len(parts) - 1
        if kind in ("step", "invalid"):
            lead = "\n" if i > 0 and parts[i - 1][0] == "context" else ""
            out.append(Segment(lead + text + ("" if last else "\n"), kind == "step"))
        elif kind == "observation":
            out.append(Segment(f"O:{text}\n", False))
        else:
            follows = None if last else parts[i + 1][0]
            out.append(
                Segment(text + ("\n" if follows in ("context", "observation") else ""), False)
            )
    return out


def segments_from_steps(prompt: str, steps: Sequence[tuple[str, str | None]]) -> list[Segment]:
    """A trajectory from its prompt and (step text, observation or None) pairs.

    A step text is the model's whole turn (thought lines and one action line)."""
    parts: list[tuple[str, str]] = [("context", prompt)]
    for step, observation in steps:
        parts.append(("step", step))
        if observation is not None:
            parts.append(("observation", observation))
    return _segments(parts)


def _has_action(text: str) -> bool:
    return any(line.strip().startswith(("C:", "A:")) for line in text.splitlines())


def _thought(content: str) -> str:
    lines = [ln if ln.startswith("T:") else f"T:{ln}" for ln in content.splitlines() if ln.strip()]
    return "".join(f"{ln}\n" for ln in lines)


def _call(call: Any) -> tuple[str, Any, str]:
    """(name, arguments, id) of an OpenAI tool call, a flat {"name", "arguments"} dict or a
    `ToolCall`."""
    if isinstance(call, Mapping):
        fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
        return str(fn.get("name", "")), fn.get("arguments", {}), str(call.get("id") or "")
    return str(call.name), call.arguments, str(getattr(call, "id", "") or "")


def segments_from_messages(messages: Sequence[Mapping[str, Any]]) -> list[Segment]:
    """A trajectory from chat messages: user(problem) -> assistant(thought, tool_calls) ->
    tool(result) -> ... -> assistant("A:<answer>").

    An assistant message whose content already holds an action line (a text-only student's
    step) is that step as written; otherwise its content becomes `T:` thought lines and each
    tool call its own step, followed by the `tool` message answering it (matched by
    `tool_call_id`, else by position). A step answered by a user message `O:<error>` (how an
    invalid action's error comes back, `memory.records.Trajectory.messages`) is not trained
    and that message is its observation. System messages are left out, as `render_prompt` does.
    """
    parts: list[tuple[str, str]] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        role, content = m.get("role"), m.get("content") or ""
        calls = (m.get("tool_calls") or []) if role == "assistant" else []
        i += 1
        if role == "system":
            continue
        if role == "tool":
            parts.append(("observation", content))
        elif role == "user" and content.startswith("O:") and parts and parts[-1][0] == "step":
            parts[-1] = ("invalid", parts[-1][1])
            parts.append(("observation", content[2:].removesuffix("\n")))
        elif role != "assistant":
            parts.append(("context", content))
        elif not calls or _has_action(content):
            parts.append(("step", content))
        else:
            results = []
            while i < len(messages) and messages[i].get("role") == "tool":
                results.append(messages[i])
                i += 1
            by_id = {r.get("tool_call_id"): r for r in results if r.get("tool_call_id")}
            for k, call in enumerate(calls):
                name, arguments, call_id = _call(call)
                thought = _thought(content) if k == 0 else ""
                parts.append(("step", thought + render_call(name, arguments)))
                result = by_id.get(call_id) if call_id else None
                if result is None and not by_id and k < len(results):
                    result = results[k]
                if result is not None:
                    parts.append(("observation", result.get("content") or ""))
    if not parts:
        raise TrainingError("segments_from_messages got no user, assistant or tool messages")
    return _segments(parts)


def _segments_of(item: Any, index: int) -> list[Segment]:
    """An item as segments: segments themselves, a list of chat messages or {"messages": ...}."""
    if isinstance(item, Mapping) and "messages" in item:
        return segments_from_messages(item["messages"])
    if isinstance(item, Sequence) and not isinstance(item, str) and item:
        if all(isinstance(m, Mapping) for m in item):
            return segments_from_messages(item)
        if all(
            isinstance(s, Sequence)
            and not isinstance(s, str)
            and len(s) == 2
            and isinstance(s[0], str)
            and isinstance(s[1], bool)
            for s in item
        ):
            segments = [Segment(text, trainable) for text, trainable in item]
            if any(s.trainable and s.text for s in segments):
                return segments
    raise TrainingError(
        f"trajectory {index} is {str(item)[:120]!r}; pass a list of (text, trainable) segments "
        "with at least one trainable text, a list of chat messages, or {'messages': [...]}"
    )


def _all_segments(trajectories: Sequence[Any]) -> list[list[Segment]]:
    if not trajectories:
        raise TrainingError(
            "the trajectory_sft trainer got no trajectories; pass at least one list of "
            "(text, trainable) segments or chat messages"
        )
    return [_segments_of(item, i) for i, item in enumerate(trajectories)]


# -- tokenising ---------------------------------------------------------------------------------


def _leading_specials(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before any text (the tiny student's BOS)."""
    with_specials = list(tokenizer("x")["input_ids"])
    plain = list(tokenizer("x", add_special_tokens=False)["input_ids"])
    for start in range(len(with_specials) - len(plain) + 1):
        if with_specials[start : start + len(plain)] == plain:
            return with_specials[:start]
    return []


@dataclass
class EncodedTrajectory:
    input_ids: list[int]
    labels: list[int]
    """-100 where the loss does not look (leading specials, prompt, observations)."""
    cut: int = 0
    """Tokens dropped from the end to fit `max_length`."""


def encode_trajectory(
    tokenizer: Any, segments: Sequence[tuple[str, bool]], max_length: int | None = None
) -> EncodedTrajectory:
    """Token ids and labels of a trajectory, EOS after a trainable last segment, the start kept."""
    ids = _leading_specials(tokenizer)
    labels = [-100] * len(ids)
    for text, trainable in segments:
        piece = list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
        ids += piece
        labels += piece if trainable else [-100] * len(piece)
    if segments and segments[-1][1] and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    cut = 0 if max_length is None else max(0, len(ids) - max_length)
    if cut:
        ids, labels = ids[:max_length], labels[:max_length]
    return EncodedTrajectory(ids, labels, cut)


@dataclass
class TrajectoryRows:
    """Trainer-ready rows and what preparing them measured."""

    rows: list[dict[str, list[int]]]
    metrics: dict[str, float] = field(default_factory=dict)


def trajectory_rows(tokenizer: Any, trajectories: Sequence[Any], max_length: int) -> TrajectoryRows:
    """`{"input_ids", "labels"}` rows of the trajectories; warns when any was truncated.

    A trajectory left with no trained token after truncation is dropped (and counted)."""
    rows, truncated, cut_tokens, dropped, tokens, trained = [], 0, 0, 0, 0, 0
    for segments in _all_segments(trajectories):
        encoded = encode_trajectory(tokenizer, segments, max_length)
        truncated += encoded.cut > 0
        cut_tokens += encoded.cut
        n_trained = sum(label != -100 for label in encoded.labels)
        if not n_trained:
            dropped += 1
            continue
        tokens += len(encoded.input_ids)
        trained += n_trained
        rows.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
    if truncated:
        warnings.warn(
            f"{truncated} of {len(trajectories)} trajectories were longer than {max_length} "
            f"tokens and lost their ends ({cut_tokens} tokens in all; {dropped} of them kept no "
            "trained token and were dropped); raise max_length (up to the model's positions) "
            "or shorten them",
            stacklevel=2,
        )
    if not rows:
        raise TrainingError(
            f"all {len(trajectories)} trajectories lost every trained token to truncation at "
            f"max_length={max_length}; shorten the prompts or use a model with more positions"
        )
    metrics = {
        "trajectories": float(len(trajectories)),
        "truncated": float(truncated),
        "truncated_tokens": float(cut_tokens),
        "dropped": float(dropped),
        "max_length": float(max_length),
        "tokens": float(tokens),
        "trained_tokens": float(trained),
    }
    return TrajectoryRows(rows, metrics)


# -- the trainer --------------------------------------------------------------------------------


def _max_length(model: Any, config: SFTJobConfig) -> int:
    positions = getattr(model.config, "max_position_embeddings", None)
    return min(config.max_length, positions) if positions else config.max_length


def _prepare(job: Job, items: Sequence[Any]):
    trl = trl_module()  # after the warm-up, which imports datasets too
    import datasets

    SFTConfig, SFTTrainer = trl.SFTConfig, trl.SFTTrainer

    trajectories = _all_segments(items)  # bad items fail before the model loads
    model, tokenizer = job.load()
    max_length = _max_length(model, job.config)
    prepared = trajectory_rows(tokenizer, trajectories, max_length)
    n = len(prepared.rows)
    args = {**trainer_args(job.config, job.out_path, n), "max_length": max_length}
    trainer = job.hf_trainer(
        SFTTrainer,
        model=model,
        tokenizer=tokenizer,
        args=SFTConfig(**args),
        dataset=datasets.Dataset.from_list(prepared.rows),
        what=f"trajectory SFT of {str(job.base_path)!r} on {n} trajectories",
    )
    return trainer, prepared.metrics


def _train_packed(job: Job, items: Sequence[Any]) -> TrainResult:
    """The job in the plain torch loop on packed batches (training.packed): the same rows,
    labels and loss as TRL's padded batches, without the padding or TRL's setup."""
    from pedagogy.training.packed import train_packed_with

    trajectories = _all_segments(items)  # bad items fail before the model loads

    def encode(model: Any, tokenizer: Any, max_length: int):
        prepared = trajectory_rows(tokenizer, trajectories, max_length)
        examples = [(row["input_ids"], row["labels"]) for row in prepared.rows]
        return examples, prepared.metrics

    return train_packed_with(job, encode)


def build_trajectory_trainer(
    base_path: str | Path,
    items: Sequence[Any],
    config: SFTJobConfig | None = None,
    *,
    out_path: str | Path,
):
    """The configured `SFTTrainer` on the tokenised trajectories, untrained (for inspection)."""
    job = Job(TrajectorySFT.kind, base_path, out_path, config or SFTJobConfig())
    return _prepare(job, items)[0]


class TrajectorySFT:
    """`trajectory_sft`: SFT on whole trajectories, the loss on the student's own tokens.

    Items: lists of (text, trainable) segments, lists of chat messages, or {"messages": [...]}
    records. Metrics: trajectories, truncated, truncated_tokens, dropped, max_length, tokens,
    trained_tokens."""

    kind = "trajectory_sft"
    config_class = SFTJobConfig

    def train(
        self,
        base_path: str | Path,
        items: Sequence[Any],
        output_dir: str | Path,
        config: SFTJobConfig | None = None,
        *,
        progress: Progress | None = None,
    ) -> TrainResult:
        job = Job(self.kind, base_path, output_dir, config or SFTJobConfig(), progress)
        if job.config.packing:
            return _train_packed(job, items)
        trainer, metrics = _prepare(job, items)
        return job.run_hf(
            trainer,
            what=f"trajectory SFT of {str(job.base_path)!r}",
            n_examples=int(metrics["trajectories"] - metrics["dropped"]),
            metrics=metrics,
        )


def run_trajectory_sft(
    base_path: str | Path,
    out_path: str | Path,
    trajectories: Sequence[Any],
    config: SFTJobConfig | None = None,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """`TrajectorySFT().train` with the output folder before the data, like `run_sft`."""
    return TrajectorySFT().train(base_path, trajectories, out_path, config, progress=progress)
