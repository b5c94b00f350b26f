"""`pedagogy bench rollouts`: a round's episodes per second against the number of Ray actors.

Each setting is a real two-round run of the embedded default student (untrained: most first
attempts are wrong, so most episodes ask the teacher) with an API teacher behind latency: the
OpenAI-compatible test server (`pedagogy.testing_server`) answering every call after
`latency_s`, through the litellm backend (`transport: direct`, 64 calls in flight per backend).
Settings: in this process (no Ray), then `ray.address: local` with 1, 2, 4, 8 actors (one
logical CPU each, however many cores the machine has: more actors than cores share them).

What is timed is round 2's episodes phase (from its first progress event to its last), so the
actors' start (once per run, in round 1) is left out: episodes/s, and the driver's CPU per
episode (`time.process_time` of this process: with Ray, what the driver does for each episode —
the broker's decisions, unpickling the records, writing them — with the episodes' own work on
the actors). The ceiling of any number of actors is the driver's: 1 / its CPU per episode, and
the store's write rate (`pedagogy bench throughput --parts store`). Wall time: run it on idle
cores, or read the ratios side by side.
"""

from __future__ import annotations

import asyncio
import importlib.util
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pedagogy.errors import ConfigError

__all__ = ["rollouts_vs_actors"]


def _config(folder: Path, base_url: str, episodes: int, actors: int | None) -> Any:
    from pedagogy.config import config_from_dict

    data: dict[str, Any] = {
        "name": f"rollouts-{actors or 0}",
        "rounds": 2,
        "workdir": str(folder / "work"),
        "db": str(folder / "work" / "pedagogy.db"),
        "teacher": {
            "kind": "litellm",
            "model": "hosted_vllm/teacher",
            "api_base": base_url,
            "max_concurrency": 64,
            "options": {"transport": "direct"},
        },
        "episodes": {"per_round": episodes, "explain_budget": episodes, "write_batch": 32},
        "training": {"max_steps": 2, "max_seconds": 600},
        "evaluation": {"heldout_per_arm": 4, "patience": None},
    }
    if actors:
        data["ray"] = {"address": "local", "actors": actors, "num_cpus": actors}
    return config_from_dict(data, "bench rollouts")


def _one(folder: Path, base_url: str, episodes: int, actors: int | None) -> dict[str, Any]:
    from pedagogy.runner import run_loop

    marks: dict[int, list[tuple[float, float, int]]] = {}

    def sink(event: str, data: dict[str, Any]) -> None:
        if event == "episodes_progress":
            marks.setdefault(data["round"], []).append(
                (time.perf_counter(), time.process_time(), int(data["done"]))
            )

    config = _config(folder, base_url, episodes, actors)
    result = asyncio.run(run_loop(config, emit=sink))
    if result.status != "completed" or 2 not in marks:
        raise ConfigError(f"bench rollouts: the run with {actors or 0} actors {result.status}")
    (w0, c0, d0), (w1, c1, d1) = marks[2][0], marks[2][-1]
    done = d1 - d0
    return {
        "actors": actors or 0,
        "episodes": done,
        "seconds": w1 - w0,
        "episodes_per_s": done / (w1 - w0),
        "driver_cpu_ms_per_episode": 1000 * (c1 - c0) / max(done, 1),
    }


def rollouts_vs_actors(
    actors: Sequence[int] = (1, 2, 4, 8),
    *,
    episodes: int = 128,
    latency_s: float = 0.2,
    progress: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    """Round 2's episodes/s in this process and on each number of Ray actors (see the module)."""
    from pedagogy.testing_server import OpenAICompatServer, echo_last_user

    if importlib.util.find_spec("ray") is None:
        raise ConfigError('bench rollouts needs Ray: pip install "pedagogy[ray]"')
    if episodes < 1 or latency_s < 0 or any(a < 1 for a in actors):
        raise ConfigError(
            f"episodes must be >= 1, latency_s >= 0 and every actor count >= 1, got "
            f"{episodes!r}, {latency_s!r} and {list(actors)!r}"
        )
    rows = []
    with OpenAICompatServer(_teacher(echo_last_user), delay_s=latency_s) as server:
        for n in (None, *actors):
            label = f"{n} Ray actor(s)" if n else "in this process"
            progress(f"bench rollouts: {episodes} episodes a round, {label} ...")
            with tempfile.TemporaryDirectory(prefix="pedagogy-rollouts-") as tmp:
                row = _one(Path(tmp), server.base_url, episodes, n)
            progress(
                f"  {row['episodes_per_s']:.1f} episodes/s, driver "
                f"{row['driver_cpu_ms_per_episode']:.2f} CPU-ms an episode"
            )
            rows.append(row)
    base = rows[0]["episodes_per_s"]
    for row in rows:
        row["vs_in_process"] = row["episodes_per_s"] / base
    return {"episodes": episodes, "latency_s": latency_s, "rows": rows}


def _teacher(fallback: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    """The stand-in teacher: the problem's worked solution, as the scripted teacher writes it."""
    import re

    from pedagogy.domains.arithmetic import worked_solution

    def respond(body: dict[str, Any]) -> str:
        text = body["messages"][-1]["content"]
        m = re.search(r"Problem: (\S+)=", text)
        return worked_solution(m.group(1)) if m else fallback(body)

    return respond
