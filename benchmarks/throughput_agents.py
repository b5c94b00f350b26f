"""The `agent_loop` part of `pedagogy bench throughput`: agent episodes against raw generation.

An acting student (the tiny student after trajectory SFT on the scripted teacher's calculator
demonstrations) runs a round's agent episodes through the agent-episode graph, all at once as
the loop runs them: each episode a chain of model steps (think, call the calculator, read its
observation, answer), a verdict, the teacher's demonstration where the attempt was wrong, and a
re-attempt. Each step is one `generate` request, so the backend can batch only the steps that
are ready at the same moment, and a step waits for its episode's previous one. The baseline is
`generate` of the same student on exactly the requests the episodes made (their rendered
prompts, each to the number of tokens it generated), bucketed by answer length: what the same
model does when every request is known in advance and nothing else runs.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pedagogy.benchmarks.throughput import _bucketed_generate, _default_pairs, _timed

__all__ = ["agent_episode_throughput", "agent_loop_ratio"]


def _acting_config() -> Any:
    """The default run's config with `agent.enabled: true` (chain_sum, the calculator)."""
    from pedagogy.config import config_from_dict, load_config

    data = load_config(None).model_dump()
    data["agent"]["enabled"] = True
    return config_from_dict(data, "the agent_loop bench")


async def _demonstrations(domain: Any, tools: dict[str, Any], problems: list[Any]) -> list:
    """The scripted teacher's calculator demonstrations of `problems`, as training segments
    (each run through an `Actor`, so every observation is a real calculator result)."""
    from pedagogy.agents.acting import Actor, DemonstrationBackend, trajectory

    teacher = Actor(DemonstrationBackend(domain), tools, agent="teacher", max_steps=16)
    out = []
    for problem in problems:
        steps = await teacher.run(problem)
        out.append(trajectory("demonstration", "teacher", problem.prompt, steps).segments())
    return out


@contextmanager
def _acting_student(
    domain: Any, tools: dict, problems: list, context: int, steps: int, seed: int
) -> Iterator[Path]:
    """A tiny student trained `steps` packed trajectory-SFT steps on demonstrations of
    `problems`, in a temporary folder that lives while the block runs."""
    from pedagogy.training.sft import SFTJobConfig
    from pedagogy.training.tiny import TinyStudentConfig, build_tiny_student
    from pedagogy.training.trajectory import run_trajectory_sft

    items = asyncio.run(_demonstrations(domain, tools, problems))
    with tempfile.TemporaryDirectory(prefix="pedagogy-acting-") as tmp:
        # Sized as a run sizes an acting student: its longest trajectory fits.
        tiny = TinyStudentConfig(max_position=-(-context // 64) * 64)
        base = build_tiny_student(Path(tmp) / "v0", tiny, seed=seed)
        # The settings that taught the tiny student well-formed calls in 300 steps
        # (tests/test_trajectory_sft.py); one thread, as two on a busy machine spin (measured,
        # 30 steps at load 5 on 2 cores: 2.9 CPU-s with one, 21.9 with two).
        config = SFTJobConfig(
            max_steps=steps,
            packing=True,
            seed=seed,
            learning_rate=3e-3,
            warmup_steps=20,
            threads=1,
        )
        yield run_trajectory_sft(base, Path(tmp) / "v1", items, config).out_path


def agent_loop_ratio(episodes: int = 200, train_steps: int = 300, seed: int = 0) -> dict[str, Any]:
    """Student steps (generations) per CPU-second in the agent-episode graph, every episode of
    a round at once, against bucketed `generate` of the same student on exactly the requests
    the episodes made; with what the episodes did (steps, tool calls, invalid steps,
    demonstrations), how the backend batched them and the CPU its batches took (the rest of
    the loop's is the graph, the tools, the verifier and the event loop)."""
    from pedagogy.assembly import agent_tools
    from pedagogy.graphs.parts import build_domain_from
    from pedagogy.run_models import acting_context

    config = _acting_config()
    domain = build_domain_from(config)
    _, solved = _default_pairs(2000 + episodes, seed)
    problems = [p for p, _ in solved]
    train, held = problems[:-episodes], problems[-episodes:]
    tools = agent_tools(config, domain)
    start = time.perf_counter()
    context = acting_context(config)
    with _acting_student(domain, tools, train, context, train_steps, seed) as path:
        setup_s = time.perf_counter() - start
        out = agent_episode_throughput(path, held, config, warm=train[:1], seed=seed)
    return {"train_steps": train_steps, "setup_s": setup_s, **out}


def agent_episode_throughput(
    student: str | Path,
    problems: list[Any],
    config: Any,
    *,
    warm: Sequence[Any] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """`agent_loop_ratio` for a given acting student on given problems, under `config` (an
    acting run's): the episodes of `warm` run first, untimed, so neither side pays the first
    call's setup."""
    from pedagogy.assembly import build_agents
    from pedagogy.backends.scripted import ScriptedBackend
    from pedagogy.backends.transformers import TransformersBackend, render_prompt
    from pedagogy.graphs.episode import build_episode_graph
    from pedagogy.graphs.parts import build_domain_from
    from pedagogy.graphs.replay_drive import invoke

    domain = build_domain_from(config)
    # One thread for both sides: CPU-seconds then count work, not threads spinning.
    backend = TransformersBackend(student, threads=1, max_batch_size=512)
    agents, factory = build_agents(
        config, domain, backend, ScriptedBackend.from_domain(domain), None, build_episode_graph
    )
    graph = factory(agents)
    # The requests as made, rendered after the timing so the recording costs the loop nothing.
    seen: list[tuple[list[dict[str, Any]], int]] = []
    batches: list[tuple[int, float]] = []  # rows, CPU-s of each batch
    generate, run_batch = backend.generate, backend._run_batch
    run_batch_rows = backend._generate_rows

    async def recording(requests: Any) -> Any:
        out = await generate(requests)
        seen.extend((r.messages, c.completion_tokens or 1) for r, c in zip(requests, out))
        return out

    def counting(requests: list[Any]) -> list[Any]:
        start = time.thread_time()  # the batch runs in a worker thread: its CPU alone
        try:
            return run_batch(requests)
        finally:
            batches.append((len(requests), time.thread_time() - start))

    backend.generate = recording  # type: ignore[method-assign]
    backend._run_batch = counting  # type: ignore[method-assign]

    async def round_(problems: list[Any]) -> list[dict[str, Any]]:
        async def one(i: int, problem: Any) -> dict[str, Any]:
            state = {
                "episode_id": f"e{i}",
                "run_id": "bench",
                "round": 1,
                "index": i,
                "seed": seed + i,
                "problem": problem,
            }
            return await invoke(graph, factory, agents, state)  # as the loop does

        try:
            return await asyncio.gather(*[one(i, p) for i, p in enumerate(problems)])
        finally:
            await backend.aclose()

    if warm:
        asyncio.run(round_(list(warm)))
        seen.clear()
        batches.clear()
    outs, loop_wall, loop_cpu = _timed(lambda: asyncio.run(round_(problems)))
    tok = backend.tokenizer
    texts = [render_prompt(tok, messages) for messages, _ in seen]
    lengths = [n for _, n in seen]
    model = backend._model
    _, raw_wall, raw_cpu = _timed(lambda: _bucketed_generate(model, tok, texts, lengths))
    # The backend's own decoding with every request at once (each to its recorded length):
    # what the loop would cost if no step waited for another.
    _, one_wall, one_cpu = _timed(lambda: run_batch_rows(texts, max(lengths, default=1), lengths))
    steps = len(seen)
    return {
        "episodes": len(problems),
        "steps": steps,
        "tokens": sum(lengths),
        "episodes_did": _what_they_did(outs),
        "batches": {
            "calls": len(batches),
            "mean_rows": steps / max(1, len(batches)),
            "under_8_rows": sum(n < 8 for n, _ in batches),
        },
        "loop": {
            "wall_s": loop_wall,
            "cpu_s": loop_cpu,
            "per_cpu_s": steps / loop_cpu,
            "generate_cpu_s": sum(c for _, c in batches),
        },
        "bucketed": {"wall_s": raw_wall, "cpu_s": raw_cpu, "per_cpu_s": steps / raw_cpu},
        "one_batch": {"wall_s": one_wall, "cpu_s": one_cpu, "per_cpu_s": steps / one_cpu},
        "ratio": raw_cpu / loop_cpu,
        "vs_one_batch": one_cpu / loop_cpu,
    }


def _what_they_did(outs: list[dict[str, Any]]) -> dict[str, float]:
    """Per episode: student steps, tool calls and invalid steps, the share demonstrated to;
    the share right at the first attempt and at the end."""
    summaries = [t for out in outs for t in out.get("trajectories", [])]
    student = [t for t in summaries if t["kind"] in ("attempt", "reattempt")]
    n = max(1, len(outs))
    return {
        "student_steps": sum(t["steps"] for t in student) / n,
        "tool_calls": sum(len(t["tools"]) for t in student) / n,
        "invalid_steps": sum(t["invalid"] for t in student) / n,
        "demonstrated": sum(t["kind"] == "demonstration" for t in summaries) / n,
        "first_correct": sum(bool(o.get("first") and o["first"].correct) for o in outs) / n,
        "final_correct": sum(bool(o.get("final") and o["final"].correct) for o in outs) / n,
    }
