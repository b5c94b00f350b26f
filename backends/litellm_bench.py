"""How many calls a second the litellm backend gets through, beside raw HTTP clients.

`litellm_throughput(concurrency=64, latency_s=0.2, calls=640)` starts the OpenAI-compatible test
server (`python -m pedagogy.testing_server`) in another process, answering every request after
`latency_s`, and sends it `calls` requests through each path in turn, `repeats` times, all from
this process, interleaved so that a change in the machine's load falls on every path alike:

    httpx    one `httpx.AsyncClient`, `concurrency` requests in flight, the JSON parsed
    aiohttp  the same with one `aiohttp.ClientSession` (the transport litellm uses)
    before   `LiteLLMBackend` as it worked before: litellm's success logging on and the cost
             computed a second time by `litellm.completion_cost`
    backend  `LiteLLMBackend.generate` with `max_concurrency=concurrency`, in this process
    workers  the same with `workers=N`: the calls made by N child processes
    direct   `LiteLLMBackend` with `transport="direct"` (`litellm_direct`), in this process

The ideal is `concurrency / latency_s` calls a second: every slot always waiting on the server,
none on the client. Each path gets calls/s, its ratio to the ideal and the client's CPU
milliseconds per call: `time.process_time` of this process (every thread) plus, for `workers`,
the CPU of its worker processes. The server's CPU per call is given apart
(`server_cpu_ms_per_call`, Linux only). Each is min, median and max over the repeats; CPU per
call depends less on what else the machine runs than calls/s does, so each path also gets
`idle_estimate`: the ratio its CPU per call would allow on idle cores (an estimate, labelled as
one, never a measurement). Every run starts with an untimed batch of `concurrency` calls in the
same event loop (imports, connections, workers).

`litellm_failover` times calls with the primary endpoint down and a fallback up, against the
fallback alone (the circuit breaker's work, `litellm_breaker`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pedagogy.backends.base import ChatRequest
from pedagogy.errors import BackendError

PATHS = ("httpx", "aiohttp", "before", "backend", "workers", "direct")
"""What `litellm_throughput` can measure, in the order each repeat runs them."""


def litellm_throughput(
    concurrency: int = 64,
    latency_s: float = 0.2,
    calls: int = 640,
    *,
    repeats: int = 3,
    paths: Sequence[str] = PATHS,
    workers: int = 2,
) -> dict[str, Any]:
    """Calls/s, ratio to the ideal and CPU-ms per call of each path (min/median/max)."""
    if min(concurrency, calls, repeats, workers) < 1 or latency_s <= 0:
        raise BackendError(
            "concurrency, calls, repeats and workers must be >= 1 and latency_s > 0, got "
            f"{concurrency!r}, {calls!r}, {repeats!r}, {workers!r} and {latency_s!r}"
        )
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        raise BackendError(f"unknown path(s) {unknown!r}; choose from {', '.join(PATHS)}")
    ideal = concurrency / latency_s
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    with _server(latency_s) as (base_url, server_pid):
        for _ in range(repeats):
            for path in paths:
                setup = _Setup(base_url, concurrency, workers)
                runs[path].append(_run(_PATHS[path], setup, calls, ideal, server_pid))
    summaries = {p: _summary(r) for p, r in runs.items()}
    for path, summary in summaries.items():
        summary["idle_estimate"] = idle_estimate(
            summary, ideal, processes=workers if path == "workers" else 1
        )
    return {
        "concurrency": concurrency,
        "latency_s": latency_s,
        "calls": calls,
        "repeats": repeats,
        "workers": workers,
        "ideal_calls_per_s": ideal,
        "paths": summaries,
    }


def idle_estimate(summary: dict[str, Any], ideal: float, *, processes: int = 1) -> float | None:
    """An ESTIMATE, not a measurement: the ratio to the ideal that the measured CPU per call
    allows on idle cores, if CPU were the only limit (an upper bound: a busy event loop also
    adds queueing). The client's `processes` each run on at most one core, and the client and
    the server together on at most the usable cores. CPU per call depends far less on the
    machine's load than calls/s, which is why a shared machine can still estimate this."""
    from pedagogy.backends.cores import usable_cores

    client = summary.get("cpu_ms_per_call", {}).get("median")
    server = summary.get("server_cpu_ms_per_call", {}).get("median", 0.0)
    if not client:
        return None
    cores = usable_cores()
    by_client = min(processes, cores) * 1000 / (client * ideal)
    by_machine = cores * 1000 / ((client + server) * ideal)
    return min(1.0, by_client, by_machine)


_KEYS = ("calls_per_s", "ratio_to_ideal", "cpu_ms_per_call", "server_cpu_ms_per_call")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    for key in _KEYS:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = {
                "min": min(values),
                "median": statistics.median(values),
                "max": max(values),
            }
    out["errors"] = sum(int(r["errors"]) for r in runs)
    return out


@dataclass
class _Setup:
    base_url: str
    concurrency: int
    workers: int


@dataclass
class _Client:
    """One path, ready in a running event loop."""

    send: Callable[[int], Awaitable[int]]
    """Make n calls; returns how many failed."""
    close: Callable[[], Awaitable[None]]
    pids: Callable[[], list[int]] = field(default=lambda: [])
    """Other processes whose CPU counts as the client's (worker processes)."""


def _run(
    make: Callable[[_Setup], Awaitable[_Client]],
    setup: _Setup,
    calls: int,
    ideal: float,
    server_pid: int,
) -> dict[str, Any]:
    """One timed batch of `calls`, after an untimed warm-up in the same event loop."""

    async def go() -> dict[str, Any]:
        client = await make(setup)
        try:
            await client.send(setup.concurrency)
            pids = client.pids()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            others0, server0 = _cpu_s(pids), _cpu_s([server_pid])
            errors = await client.send(calls)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            others, server = _cpu_s(pids), _cpu_s([server_pid])
        finally:
            await client.close()
        if others is not None and others0 is not None:
            cpu += others - others0
        rate = calls / wall
        return {
            "calls_per_s": rate,
            "ratio_to_ideal": rate / ideal,
            "cpu_ms_per_call": 1000 * cpu / calls,
            "server_cpu_ms_per_call": (
                1000 * (server - server0) / calls
                if server is not None and server0 is not None
                else None
            ),
            "wall_s": wall,
            "errors": errors,
        }

    return asyncio.run(go())


def _cpu_s(pids: list[int]) -> float | None:
    """User + system CPU seconds of these processes so far (Linux /proc); None elsewhere."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(messages=[{"role": "user", "content": f"what is {i} plus {i}"}], max_tokens=16)
        for i in range(n)
    ]


def _body(request: ChatRequest) -> dict[str, Any]:
    return {
        "model": "local",
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }


async def _gather(one: Callable[[ChatRequest], Awaitable[bool]], n: int) -> int:
    ok = await asyncio.gather(*(one(r) for r in _requests(n)))
    return sum(1 for x in ok if not x)


async def _httpx(setup: _Setup) -> _Client:
    import httpx

    n = setup.concurrency
    client = httpx.AsyncClient(
        base_url=setup.base_url,
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        timeout=60.0,
        headers={"Authorization": "Bearer no-key"},
    )
    semaphore = asyncio.Semaphore(n)

    async def one(request: ChatRequest) -> bool:
        async with semaphore:
            response = await client.post("/chat/completions", json=_body(request))
            data = response.json()
            return response.status_code == 200 and bool(data["choices"][0]["message"])

    return _Client(lambda k: _gather(one, k), client.aclose)


async def _aiohttp(setup: _Setup) -> _Client:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=setup.concurrency),
        headers={"Authorization": "Bearer no-key"},
    )
    semaphore = asyncio.Semaphore(setup.concurrency)
    url = setup.base_url + "/chat/completions"

    async def one(request: ChatRequest) -> bool:
        async with semaphore, session.post(url, json=_body(request)) as response:
            data = await response.json()
            return response.status == 200 and bool(data["choices"][0]["message"])

    return _Client(lambda k: _gather(one, k), session.close)


def _backend(kind: str) -> Callable[[_Setup], Awaitable[_Client]]:
    async def make(setup: _Setup) -> _Client:
        from pedagogy.backends.litellm import LiteLLMBackend

        cls = _before_backend() if kind == "before" else LiteLLMBackend
        backend = cls(
            "openai/local",
            api_base=setup.base_url,
            max_concurrency=setup.concurrency,
            max_retries=0,
            workers=setup.workers if kind == "workers" else 1,
            transport="direct" if kind == "direct" else "litellm",
        )

        async def send(n: int) -> int:
            out = await backend.generate(_requests(n))
            return sum(1 for c in out if c.error is not None)

        async def close() -> None:
            backend.close()

        def pids() -> list[int]:
            return backend.worker_pids

        return _Client(send, close, pids)

    return make


def _before_backend() -> Any:
    """`LiteLLMBackend` as it worked before: litellm's logging on, the cost computed again."""
    from pedagogy.backends.litellm import LiteLLMBackend, _litellm

    class BeforeBackend(LiteLLMBackend):
        _skip_litellm_logging = False

        @staticmethod
        def _cost(response: Any) -> float | None:
            try:
                cost = _litellm().completion_cost(completion_response=response)
            except Exception:
                return None
            return float(cost) if cost is not None else None

    return BeforeBackend


_PATHS: dict[str, Callable[[_Setup], Awaitable[_Client]]] = {
    "httpx": _httpx,
    "aiohttp": _aiohttp,
    "before": _backend("before"),
    "backend": _backend("backend"),
    "workers": _backend("workers"),
    "direct": _backend("direct"),
}


def litellm_failover(
    calls: int = 192,
    concurrency: int = 64,
    latency_s: float = 0.2,
    *,
    repeats: int = 3,
    without_breaker: bool = True,
) -> dict[str, Any]:
    """Wall time of `calls` through a backend whose primary endpoint is down (a closed port on
    127.0.0.1) and whose fallback is the test server, against the fallback alone; with
    `without_breaker`, also with the circuit breaker off (every call retries the dead primary
    first). Backend defaults otherwise (3 retries, 0.5 s backoff); a fresh backend per run, so
    each starts with its breaker closed. Each is min/median/max over the repeats."""
    import socket

    from pedagogy.backends.litellm import LiteLLMBackend

    if min(concurrency, calls, repeats) < 1 or latency_s <= 0:
        raise BackendError(
            "concurrency, calls and repeats must be >= 1 and latency_s > 0, got "
            f"{concurrency!r}, {calls!r}, {repeats!r} and {latency_s!r}"
        )
    with socket.socket() as s:  # a port nothing listens on: every connection is refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    kinds = ("fallback_alone", "dead_primary") + (("no_breaker",) if without_breaker else ())
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}

    def backend(url: str, kind: str) -> LiteLLMBackend:
        if kind == "fallback_alone":
            return LiteLLMBackend("openai/local", api_base=url, max_concurrency=concurrency)
        return LiteLLMBackend(
            "openai/local",
            api_base=dead,
            fallbacks=[{"model": "openai/local", "api_base": url}],
            max_concurrency=concurrency,
            breaker_threshold=0 if kind == "no_breaker" else 3,
        )

    async def one(url: str, kind: str) -> dict[str, Any]:
        await backend(url, "fallback_alone").generate(_requests(concurrency))  # warm
        b = backend(url, kind)
        t0 = time.perf_counter()
        out = await b.generate(_requests(calls))
        wall = time.perf_counter() - t0
        return {
            "wall_s": wall,
            "errors": sum(1 for c in out if c.error is not None),
            "dead_attempts": sum(1 for c in out for a in c.attempts if a.endpoint.endswith(dead)),
            "breaker_events": [e.state for e in b.breaker.events],
        }

    with _server(latency_s) as (url, _):
        for _ in range(repeats):
            for kind in kinds:
                runs[kind].append(asyncio.run(one(url, kind)))
    out: dict[str, Any] = {"calls": calls, "concurrency": concurrency, "latency_s": latency_s}
    for kind, rs in runs.items():
        walls = [r["wall_s"] for r in rs]
        out[kind] = {
            "runs": rs,
            "wall_s": {"min": min(walls), "median": statistics.median(walls), "max": max(walls)},
        }
    ratios = [
        d["wall_s"] / a["wall_s"] for d, a in zip(runs["dead_primary"], runs["fallback_alone"])
    ]
    out["ratio"] = {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}
    return out


@contextmanager
def _server(latency_s: float) -> Iterator[tuple[str, int]]:
    """The test server in a child process; yields its base URL and process id."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pedagogy.testing_server", "--delay-s", repr(latency_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        if not line.startswith("http://"):
            raise BackendError(f"the test server did not start (it printed {line!r})")
        yield line, proc.pid
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
