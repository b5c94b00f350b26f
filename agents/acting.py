"""Acting agents: a model turn is one step (thoughts, then a tool call or the answer).

Text-only models (the tiny student, scripted teachers) write the text action format of
AGENT_SPEC: `T:<thought>` lines, then one action line, `C:<tool>(<raw>)` for a tool whose only
required parameter is a string, `C:<tool> <json object>` for any other call, or `A:<answer>`;
LLM backends may call tools natively instead (`Completion.tool_calls`). `parse_action` and
`render_action` convert between text and `Action`; `Actor` runs steps through a backend, one
`generate` call per step (so a batching backend batches the steps of concurrent episodes), and
executes tools through a `ToolRunner`: live, or recorded for replay (observations served from the
store, nothing executed). `DemonstrationBackend` is the scripted teacher that acts: it replays a
domain's `demonstrate(problem)` or, for arithmetic, one calculator call per operation (or one for
the whole expression), so a demonstration is a real trajectory with real tool executions.

Actions live in `pedagogy.agents.actions`, the demonstrating teacher in
`pedagogy.agents.demonstrations`; their names stay importable from here.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pedagogy.agents.actions import (
    Action,
    action_from_dict,
    action_of,
    first_thought,
    ftp_from,
    parse_action,
    render_action,
    string_parameter,
)
from pedagogy.agents.demonstrations import (
    DEMOS,
    DemonstrationBackend,
    arithmetic_demonstration,
    expression_of,
)
from pedagogy.agents.roles import make_turn
from pedagogy.backends.base import (
    Backend,
    ChatRequest,
    Completion,
    WritesTextActions,
    openai_tool_calls,
)
from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError
from pedagogy.memory.records import ToolCallRecord, Trajectory, TrajectoryStep, TurnRecord
from pedagogy.tools.base import Observation, Tool, ToolCall, run_tool_call, tool_spec

__all__ = [
    "ACT_INSTRUCTIONS",
    "DEMOS",
    "STOP",
    "STOP_LINES",
    "Action",
    "Actor",
    "DemonstrationBackend",
    "LiveToolRunner",
    "RecordedToolRunner",
    "SpecTool",
    "Step",
    "ToolRunner",
    "action_from_dict",
    "action_of",
    "arithmetic_demonstration",
    "expression_of",
    "first_thought",
    "ftp_from",
    "parse_action",
    "render_action",
    "string_parameter",
    "tools_from_specs",
    "trajectory",
]

ACT_INSTRUCTIONS = (
    "Solve the problem step by step with the tools. Each reply is one step: optional thought "
    "lines 'T:<thought>', then exactly one action line: 'C:<tool>(<argument>)' for a tool with "
    "one string argument, 'C:<tool> {<json arguments>}' for any other call, or "
    "'A:<final answer>'. Tool results come back as 'O:<result>'."
)
"""The system message of LLM actors (text-only models never see system messages)."""
STOP = ["\nO:"]
"""An LLM stops before inventing the observation (the stop strings an API server takes)."""
STOP_LINES = ["C:", "A:"]
"""A text model's step ends after its action line (`ChatRequest.stop_lines`): what follows it is
never read (`parse_action` takes the first action line), so it is not decoded."""

# --- tool runners --------------------------------------------------------------------------------


class ToolRunner(Protocol):
    """Executes (or serves) the tool calls of acting agents."""

    executions: int
    """Tools actually executed."""

    async def run(self, call: ToolCall) -> Observation: ...


class LiveToolRunner:
    """Calls the tools (an unknown name or a broken tool comes back as an observation)."""

    def __init__(self, tools: Mapping[str, Tool]):
        self.tools = dict(tools)
        self.executions = 0

    async def run(self, call: ToolCall) -> Observation:
        if call.name in self.tools:
            self.executions += 1
        return await run_tool_call(self.tools, call)


class RecordedToolRunner:
    """Serves stored observations in order and executes nothing (exact replay).

    A requested call that differs from the stored one is a mismatch; a call with nothing stored
    is a miss, answered by `fallback` when given (counterfactual replay), else with an error."""

    def __init__(self, calls: Sequence[ToolCallRecord], fallback: ToolRunner | None = None):
        self._calls = list(calls)
        self.fallback = fallback
        self.executions = 0
        self.misses = 0
        self.mismatches: list[str] = []

    @property
    def unused(self) -> int:
        return len(self._calls)

    async def run(self, call: ToolCall) -> Observation:
        if not self._calls:
            self.misses += 1
            if self.fallback is not None:
                self.executions += 1
                return await self.fallback.run(call)
            return Observation(
                text="error: no recorded observation", ok=False, error="not_recorded"
            )
        stored = self._calls.pop(0)
        if stored.tool != call.name or stored.arguments != call.arguments:
            self.mismatches.append(
                f"step {stored.step}: requested {call.name} {call.arguments!r}, "
                f"stored {stored.tool} {stored.arguments!r}"
            )
        return Observation(
            text=stored.observation,
            ok=stored.ok,
            error=stored.error,
            latency_s=stored.latency_s,
            truncated=stored.truncated,
            detail=dict(stored.detail),
        )


# --- the actor -----------------------------------------------------------------------------------


@dataclass
class Step:
    """One step an actor took: the action, its turn and, after a call or an invalid action, the
    observation (and the tool call record)."""

    action: Action
    turn: TurnRecord
    observation: Observation | None = None
    tool_call: ToolCallRecord | None = None
    prefix: str = ""
    """A given first-thought prefix that starts `action.text`."""

    @property
    def final(self) -> bool:
        """The trajectory ends here: an answer, or a backend failure."""
        return self.action.kind == "answer" or bool(self.turn.error)

    def messages(self) -> list[dict[str, Any]]:
        """The step as chat messages for the next request."""
        a = self.action
        if a.kind == "call":
            content = self.turn.response if a.native else a.text
            obs = self.observation.text if self.observation is not None else ""
            return [
                {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": openai_tool_calls([a.call]),
                },
                {"role": "tool", "tool_call_id": a.call_id, "content": obs},
            ]
        out: list[dict[str, Any]] = [{"role": "assistant", "content": a.text}]
        if a.kind == "invalid" and self.observation is not None:
            out.append({"role": "user", "content": f"O:{self.observation.text}\n"})
        return out


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _invalid(why: str | None) -> Observation:
    return Observation(text=f"error: invalid action ({why})", ok=False, error="invalid_action")


@dataclass
class Actor:
    """An agent that solves problems in steps with tools."""

    backend: Backend
    tools: dict[str, Tool] = field(default_factory=dict)
    """Name -> tool; their specs go with every request (`ChatRequest.tools`)."""
    max_steps: int = 6
    """Steps per trajectory; a trajectory without an answer by then has none."""
    max_tokens: int = 64
    """Per step."""
    temperature: float = 0.0
    sag_n: int = 1
    """Self-consistent action generation: sample this many candidates per step (n > 1), keep
    those that parse and whose tool runs ok, take the majority by observation / answer."""
    sag_temperature: float = 0.7
    """Sampling temperature of the candidates when `temperature` is 0."""
    ftp: Callable[[Problem], str | None] | None = None
    """First-thought prefix: the first thought of a worked solution (`ftp_from(domain)`),
    given as the start of each trajectory's first step; None: off."""
    ftp_mode: str = "auto"
    """prefix (a trailing assistant message the model continues) | prompt (asked for in the
    user message) | auto (prefix for text models, `WritesTextActions`; prompt for the rest)."""
    runner: ToolRunner | None = None
    """Executes the tools; default a `LiveToolRunner` over `tools`."""
    agent: str = "student"
    """The role its turns are recorded as."""
    instructions: str | None = "auto"
    """System message; auto: none for text models (`WritesTextActions`), else `ACT_INSTRUCTIONS`."""
    stop: list[str] = field(default_factory=lambda: list(STOP))
    stop_after_action: bool = True
    """Ask the backend to end each step after its first action line (`STOP_LINES`), so a
    local model decodes nothing the step does not use (the parsed action is the same). Not
    asked with `multiline_answer` (an answer runs to the end of the step). False: each step
    runs to `max_tokens`, EOS or a stop string."""
    multiline_answer: bool = False
    """An answer runs from `A:` to the end of the step (the code domain's functions); False:
    to the end of its line. Runs take it from the domain's `multiline_answers`."""

    def __post_init__(self) -> None:
        if not isinstance(self.tools, Mapping):
            raise ConfigError(
                f"Actor.tools must be a dict name -> Tool, got {type(self.tools).__name__}"
            )
        for name, tool in self.tools.items():
            if not isinstance(tool, Tool):
                raise ConfigError(
                    f"Actor.tools[{name!r}] is not a Tool (name, description, "
                    f"parameters, async call): got {type(tool).__name__}"
                )
        if self.max_steps < 1:
            raise ConfigError(f"Actor.max_steps must be >= 1, got {self.max_steps}")
        if self.sag_n < 1:
            raise ConfigError(f"Actor.sag_n must be >= 1 (1 = off), got {self.sag_n}")
        if self.ftp_mode not in ("auto", "prefix", "prompt"):
            raise ConfigError(f"Actor.ftp_mode {self.ftp_mode!r}: choose auto, prefix or prompt")
        text_model = isinstance(self.backend, WritesTextActions) and self.backend.text_actions
        if self.ftp_mode == "auto":
            self.ftp_mode = "prefix" if text_model else "prompt"
        if self.instructions == "auto":
            self.instructions = None if text_model else ACT_INSTRUCTIONS
        if self.runner is None:
            self.runner = LiveToolRunner(self.tools)

    # requests

    def messages(
        self,
        problem: Problem,
        steps: Sequence[Step],
        prefix: str | None = None,
        ftp: str | None = None,
    ) -> list[dict[str, Any]]:
        """The conversation so far: user(problem, after `prefix`), then each step's messages."""
        content = problem.prompt if prefix is None else f"{prefix}\n{problem.prompt}"
        if ftp and self.ftp_mode == "prompt":
            content = f"{content}\nBegin your first step with this thought:\n{ftp.strip()}"
        messages: list[dict[str, Any]] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        messages.append({"role": "user", "content": content})
        for step in steps:
            messages += step.messages()
        if ftp and self.ftp_mode == "prefix":
            messages.append({"role": "assistant", "content": ftp})
        return messages

    def request(
        self,
        problem: Problem,
        messages: list[dict[str, Any]],
        seed: int | None,
        temperature: float | None = None,
    ) -> ChatRequest:
        return ChatRequest(
            messages=messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature if temperature is None else temperature,
            seed=seed,
            stop=list(self.stop) or None,
            problem=problem,
            purpose="act",
            tools=[tool_spec(t) for t in self.tools.values()] or None,
            stop_lines=self._stop_lines(),
        )

    def _stop_lines(self) -> list[str] | None:
        # A multi-line answer runs from its `A:` line to the end of the step, and a `C:` line
        # after it is part of the answer: no line ends such a step.
        if not self.stop_after_action or self.multiline_answer:
            return None
        return list(STOP_LINES)

    # steps

    async def act(
        self,
        problem: Problem,
        steps: Sequence[Step],
        *,
        kind: str = "attempt",
        seq: int = 0,
        seed: int | None = None,
        prefix: str | None = None,
    ) -> Step:
        """The next step: one `generate` call (of `sag_n` requests). An invalid action gets its
        error observation here; a call is executed by `execute` (already, for SAG candidates)."""
        index = len(steps)
        ftp = None
        if index == 0 and self.ftp is not None:
            thought = self.ftp(problem)
            ftp = f"{thought.strip()}\n" if thought else None
        messages = self.messages(problem, steps, prefix, ftp)
        step_seed = None if seed is None else seed * 1000 + index
        call_id = f"call_{index}"
        detail: dict[str, Any] = {"trajectory": kind, "step": index}
        if self.sag_n > 1:
            request, completion, action, observation, sag = await self._sample(
                problem, messages, step_seed, call_id, ftp
            )
            detail["sag"] = sag
        else:
            request = self.request(problem, messages, step_seed)
            (completion,) = await self.backend.generate([request])
            action, observation = self._action(completion, ftp, call_id), None
        # The turn's response is the model's own text; a given prefix is in its request.
        turn = make_turn(self.agent, self.backend, request, completion, seq)
        detail.update(text=action.text, action=action.kind)
        if ftp:
            detail.update(ftp=ftp, ftp_mode=self.ftp_mode)
        if action.native:
            detail["native"] = True
            if len(completion.tool_calls) > 1:
                detail["ignored_calls"] = _json_safe(openai_tool_calls(completion.tool_calls[1:]))
        if action.kind == "invalid":
            observation = _invalid(action.error or turn.error)
            detail["observation"] = observation.text
        turn.detail = {**turn.detail, **detail}  # keeps make_turn's finish_reason
        return Step(
            action, turn, observation, prefix=ftp if ftp and self.ftp_mode == "prefix" else ""
        )

    def _action(self, completion: Completion, ftp: str | None, call_id: str) -> Action:
        if completion.error:
            return Action("invalid", completion.text, error=f"backend error: {completion.error}")
        if ftp and self.ftp_mode == "prefix" and not completion.tool_calls:
            completion = Completion(text=ftp + completion.text, model=completion.model)
        return action_of(
            completion, self.tools, call_id=call_id, multiline_answer=self.multiline_answer
        )

    async def execute(self, step: Step) -> ToolCallRecord:
        """Run the step's tool call (unless a SAG candidate already did) and record it."""
        call = step.action.call
        obs = step.observation if step.observation is not None else await self.runner.run(call)
        step.observation = obs
        step.tool_call = ToolCallRecord(
            id=uuid.uuid4().hex,
            turn_id=step.turn.id,
            step=int(step.turn.detail.get("step", 0)),
            tool=call.name,
            call_id=call.id,
            arguments=_json_safe(call.arguments),
            observation=obs.text,
            ok=obs.ok,
            error=obs.error,
            latency_s=float(obs.latency_s),
            truncated=obs.truncated,
            detail=_json_safe(obs.detail or {}),
        )
        return step.tool_call

    async def _sample(
        self,
        problem: Problem,
        messages: list[dict[str, Any]],
        seed: int | None,
        call_id: str,
        ftp: str | None,
    ) -> tuple[ChatRequest, Completion, Action, Observation | None, dict[str, Any]]:
        """Self-consistent action generation: n candidates in one `generate` call."""
        temperature = self.temperature if self.temperature > 0 else self.sag_temperature
        requests = [
            self.request(problem, messages, None if seed is None else seed * 31 + k, temperature)
            for k in range(self.sag_n)
        ]
        completions = await self.backend.generate(requests)
        actions = [self._action(c, ftp, call_id) for c in completions]
        ran: dict[str, Observation] = {}
        executed = 0
        votes: Counter[str] = Counter()
        first_of: dict[str, int] = {}
        observations: list[Observation | None] = [None] * len(actions)
        for k, action in enumerate(actions):
            if action.kind == "invalid":
                continue
            if action.kind == "answer":
                key = f"A:{action.answer}"
            else:
                args = json.dumps(action.arguments, sort_keys=True, default=str)
                run_key = f"{action.tool} {args}"
                if run_key not in ran:
                    ran[run_key] = await self.runner.run(action.call)
                    executed += action.tool in self.tools
                observations[k] = ran[run_key]
                if not observations[k].ok:
                    continue
                key = f"O:{observations[k].text}"
            votes[key] += 1
            first_of.setdefault(key, k)
        if votes:
            best = max(votes, key=lambda key: (votes[key], -first_of[key]))
            chosen = first_of[best]
        else:
            chosen = 0
        sag = {
            "n": len(actions),
            "kept": sum(votes.values()),
            "chosen": chosen,
            "votes": dict(votes),
            "executed": executed,
        }
        combined = Completion(
            text=completions[chosen].text,
            model=completions[chosen].model,
            prompt_tokens=sum(c.prompt_tokens for c in completions),
            completion_tokens=sum(c.completion_tokens for c in completions),
            latency_s=max(c.latency_s for c in completions),
            cost=None
            if all(c.cost is None for c in completions)
            else sum(c.cost or 0.0 for c in completions),
            model_version=completions[chosen].model_version,
            error=completions[chosen].error,
            tool_calls=list(completions[chosen].tool_calls),
            finish_reason=completions[chosen].finish_reason,
        )
        return requests[chosen], combined, actions[chosen], observations[chosen], sag

    async def run(
        self,
        problem: Problem,
        *,
        kind: str = "attempt",
        seq: int = 0,
        seed: int | None = None,
        prefix: str | None = None,
    ) -> list[Step]:
        """A whole trajectory: act, execute, ... until an answer, a failure or `max_steps`."""
        steps: list[Step] = []
        while len(steps) < self.max_steps:
            step = await self.act(
                problem, steps, kind=kind, seq=seq + len(steps), seed=seed, prefix=prefix
            )
            if step.action.kind == "call":
                await self.execute(step)
            steps.append(step)
            if step.final:
                break
        return steps


def trajectory(kind: str, agent: str, prompt: str, steps: Sequence[Step]) -> Trajectory:
    """The steps as a `Trajectory` record (plain text, segments, chat messages)."""
    return Trajectory(
        kind,
        agent,
        prompt,
        [
            TrajectoryStep(
                turn=s.turn,
                text=s.action.text,
                action=s.action.kind,
                prefix=s.prefix,
                tool_call=s.tool_call,
                observation=None
                if s.observation is None or s.action.kind == "answer"
                else s.observation.text,
            )
            for s in steps
        ],
    )


class SpecTool:
    """A tool known only by its spec (as stored with a request): it parses and renders calls
    but never runs (replay serves the recorded observations)."""

    def __init__(self, spec: Mapping[str, Any]):
        function = spec.get("function", spec)
        self.name = str(function.get("name", ""))
        self.description = str(function.get("description", ""))
        self.parameters = dict(function.get("parameters") or {})

    async def call(self, arguments: dict[str, Any]) -> Observation:
        return Observation(
            text=f"error: {self.name} is not executed here", ok=False, error="refused"
        )


def tools_from_specs(specs: Sequence[Mapping[str, Any]] | None) -> dict[str, Tool]:
    """Stand-ins for the tools of a stored request (`ChatRequest.tools`)."""
    tools = [SpecTool(s) for s in specs or []]
    return {t.name: t for t in tools}


def __getattr__(name: str) -> Any:
    if name == "TEXT_BACKENDS":
        import warnings

        warnings.warn(
            "pedagogy.agents.acting.TEXT_BACKENDS is deprecated and no longer consulted: a "
            "backend is a text model when it declares text_actions = True "
            "(pedagogy.backends.base.WritesTextActions)",
            DeprecationWarning,
            stacklevel=2,
        )
        return frozenset({"transformers", "scripted", "replay"})
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
