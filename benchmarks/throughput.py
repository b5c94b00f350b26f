"""`pedagogy bench throughput`: how close each part runs to what its own machinery allows.

Each measure runs pedagogy's path and a baseline side by side in one process, on the same data,
and reports the ratio; CPU-seconds (user + system of this process, and of its worker processes
where a path uses them) are reported beside wall time, because wall time on a shared machine
says more about the neighbours than about the code.

- training: optimiser steps per CPU-second of the packed torch loop against TRL's SFTTrainer on
  the same examples (and the share of each padded batch that is padding).
- decoding: generated tokens per CPU-second of the backend's decoding, which drops finished rows,
  against one `generate` over the whole batch and against `generate` over batches bucketed by
  answer length (the baseline that knows the lengths in advance).
- loop: student attempts per CPU-second through the episode graph, a round's episodes at once,
  against `generate` of the same student on exactly the requests they made.
- agent_loop: the same for agent episodes, one step (generation) at a time with the calculator
  (`pedagogy.benchmarks.throughput_agents`).
- growth: a round's store work (its examples, the round history, its episodes, the evaluations)
  with 100k stored episodes against 1k, and the same for reading the whole run again; store:
  turns per CPU-second recorded through `record_episodes` (hash chain included) against Core
  `executemany` inserting the same rows into the same tables
  (`pedagogy.benchmarks.throughput_store`).
- replay and the litellm backend: `pedagogy.graphs.replay_bench` and
  `pedagogy.backends.litellm_bench`.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Parts kept in their own modules (which import this one's helpers), served by `__getattr__`.
_ELSEWHERE = {
    "agent_loop_ratio": "pedagogy.benchmarks.throughput_agents",
    "growth": "pedagogy.benchmarks.throughput_store",
    "store_ratio": "pedagogy.benchmarks.throughput_store",
}

__all__ = ["decode_ratio", "loop_ratio", "rows", "run", "training_ratio", *_ELSEWHERE]


def _cpu() -> float:
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - w, _cpu() - c


def _default_pairs(n: int, seed: int = 0) -> tuple[Any, list[tuple[Any, str]]]:
    """The default run's domain and `n` of its problems with worked solutions, every level."""
    from pedagogy.config import load_config
    from pedagogy.graphs.parts import build_domain_from

    domain = build_domain_from(load_config(None))
    rng = random.Random(seed)
    arms = [(s, lv) for s in domain.skills() for lv in domain.levels(s)]
    out = []
    for i in range(n):
        (problem,) = domain.generate(rng, 1, *arms[i % len(arms)])
        solution = domain.solve(problem)
        if solution is not None:
            out.append((problem, solution))
    return domain, out


def _padding(pairs: list[tuple[str, str]], tokenizer: Any, batch: int, seed: int) -> float:
    """Share of a padded batch's cells that are padding, over random batches of `batch`."""
    from pedagogy.training.packed import encode_pairs

    encoded, _ = encode_pairs(tokenizer, pairs, 1 << 16)
    lengths = [len(ids) for ids, _ in encoded]
    rng = random.Random(seed)
    real = cells = 0
    for _ in range(200):
        picked = rng.sample(lengths, min(batch, len(lengths)))
        real += sum(picked)
        cells += max(picked) * len(picked)
    return 1 - real / cells


def training_ratio(steps: int = 150, examples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Steps per CPU-second of the packed loop and of TRL on the default run's examples."""
    import torch
    from transformers import AutoTokenizer

    from pedagogy.training.sft import SFTJobConfig, run_sft
    from pedagogy.training.tiny import build_tiny_student

    _, solved = _default_pairs(examples, seed)
    pairs = [(p.prompt, s) for p, s in solved]
    out: dict[str, Any] = {"steps": steps, "examples": len(pairs)}
    torch.set_num_threads(1)  # CPU-seconds then count work, not threads spinning
    with tempfile.TemporaryDirectory(prefix="pedagogy-train-") as tmp:
        base = build_tiny_student(Path(tmp) / "v0", seed=seed)
        out["padding_padded"] = _padding(pairs, AutoTokenizer.from_pretrained(base), 16, seed)
        for name, packing in (("trl", False), ("packed", True)):
            config = SFTJobConfig(max_steps=steps, packing=packing, seed=seed, max_length=256)
            result, wall, cpu = _timed(
                lambda config=config, name=name: run_sft(base, Path(tmp) / name, pairs, config)
            )
            out[name] = {
                "wall_s": wall,
                "cpu_s": cpu,
                "setup_s": result.setup_seconds,
                "steps_per_cpu_s": result.steps / cpu,
                "final_loss": result.final_loss,
            }
            if packing:
                out["padding_packed"] = result.metrics.get("padding")
        out["ratio"] = out["packed"]["steps_per_cpu_s"] / out["trl"]["steps_per_cpu_s"]
    return out


@contextmanager
def _trained_student(solved: list[tuple[Any, str]], steps: int, seed: int) -> Iterator[Path]:
    """A tiny student trained `steps` packed steps on (problem, solution) pairs, in a temporary
    folder that lives while the block runs."""
    from pedagogy.training.sft import SFTJobConfig, run_sft
    from pedagogy.training.tiny import build_tiny_student

    with tempfile.TemporaryDirectory(prefix="pedagogy-student-") as tmp:
        base = build_tiny_student(Path(tmp) / "v0", seed=seed)
        config = SFTJobConfig(max_steps=steps, packing=True, seed=seed)
        run_sft(base, Path(tmp) / "v1", [(p.prompt, s) for p, s in solved], config)
        yield Path(tmp) / "v1"


def decode_ratio(prompts: int = 400, train_steps: int = 300, seed: int = 0) -> dict[str, Any]:
    """Tokens per CPU-second of the backend's decoding vs `generate`, on a trained tiny student."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pedagogy.backends.decode import decode
    from pedagogy.backends.transformers import quiet_progress, render_prompt

    _, solved = _default_pairs(4000 + prompts, seed)
    held = solved[-prompts:]
    with _trained_student(solved[:-prompts], train_steps, seed) as path, quiet_progress():
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        tok = AutoTokenizer.from_pretrained(path)
    texts = [render_prompt(tok, [{"role": "user", "content": p.prompt}]) for p, _ in held]
    eos, limit = tok.eos_token_id, 64
    torch.set_num_threads(1)  # CPU-seconds then count work, not threads spinning

    def generate(rows: list[str], max_new: int) -> list[list[int]]:
        enc = tok(rows, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=eos,
            )
        new = [r[enc["input_ids"].shape[1] :].tolist() for r in out]
        return [r[: r.index(eos) + 1] if eos in r else r for r in new]

    def ours() -> list[list[int]]:
        enc = tok(texts, return_tensors="pt", padding=True)
        return decode(
            model,
            enc["input_ids"],
            enc["attention_mask"],
            limits=[limit] * len(texts),
            eos_token_id=eos,
        )

    rows, ours_wall, ours_cpu = _timed(ours)
    lengths = [len(r) for r in rows]

    def bucketed() -> list[list[int]]:
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        out: list[list[int]] = [[] for _ in texts]
        for start in range(0, len(order), 64):
            chunk = order[start : start + 64]
            for i, r in zip(
                chunk, generate([texts[i] for i in chunk], max(lengths[i] for i in chunk))
            ):
                out[i] = r
        return out

    raw, raw_wall, raw_cpu = _timed(lambda: generate(texts, limit))
    bucket, bucket_wall, bucket_cpu = _timed(bucketed)
    tokens = sum(lengths)
    return {
        "prompts": len(texts),
        "mean_tokens": tokens / len(texts),
        "max_tokens": limit,
        "identical_to_generate": sum(a == b for a, b in zip(rows, raw)) / len(rows),
        "decode": {"wall_s": ours_wall, "cpu_s": ours_cpu, "tokens_per_cpu_s": tokens / ours_cpu},
        "generate": {"wall_s": raw_wall, "cpu_s": raw_cpu, "tokens_per_cpu_s": tokens / raw_cpu},
        "bucketed": {
            "wall_s": bucket_wall,
            "cpu_s": bucket_cpu,
            "tokens_per_cpu_s": tokens / bucket_cpu,
        },
        "vs_generate": raw_cpu / ours_cpu,
        "vs_bucketed": bucket_cpu / ours_cpu,
    }


def _bucketed_generate(model: Any, tok: Any, texts: list[str], lengths: list[int]) -> None:
    """`generate` over batches of 64 texts of similar answer length, each to its longest."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    for start in range(0, len(order), 64):
        chunk = order[start : start + 64]
        enc = tok([texts[i] for i in chunk], return_tensors="pt", padding=True)
        with torch.inference_mode():
            model.generate(
                **enc,
                max_new_tokens=max(1, max(lengths[i] for i in chunk)),
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )


def loop_ratio(episodes: int = 400, train_steps: int = 300, seed: int = 0) -> dict[str, Any]:
    """Student attempts per CPU-second in the episode graph (every episode of a round at once,
    as the loop runs them: attempt, verdict, explanation, re-attempt) against `generate` of the
    same student on exactly the requests the episodes made, bucketed by answer length."""
    import asyncio

    from pedagogy.agents.roles import Student, Teacher, Verifier
    from pedagogy.backends.scripted import ScriptedBackend
    from pedagogy.backends.transformers import TransformersBackend, render_prompt
    from pedagogy.graphs.episode import Agents, build_episode_graph
    from pedagogy.graphs.replay_drive import invoke

    domain, solved = _default_pairs(4000 + episodes, seed)
    held = solved[-episodes:]
    with _trained_student(solved[:-episodes], train_steps, seed) as path:
        # One thread for both sides: CPU-seconds then count work, not threads spinning.
        backend = TransformersBackend(path, threads=1, max_batch_size=512)
    seen: list[tuple[str, int]] = []
    generate = backend.generate

    async def recording(requests: Any) -> Any:
        out = await generate(requests)
        for r, c in zip(requests, out):
            seen.append((render_prompt(backend.tokenizer, r.messages), c.completion_tokens or 1))
        return out

    backend.generate = recording  # type: ignore[method-assign]
    agents = Agents(
        Student(backend),
        Teacher(ScriptedBackend.from_domain(domain)),
        Verifier(domain, None),
        reattempt=True,
    )
    graph = build_episode_graph(agents)

    async def round_() -> None:
        async def one(i: int, problem: Any) -> Any:
            state = {
                "episode_id": f"e{i}",
                "run_id": "bench",
                "round": 1,
                "index": i,
                "seed": seed + i,
                "problem": problem,
            }
            return await invoke(graph, build_episode_graph, agents, state)  # as the loop does

        await asyncio.gather(*[one(i, p) for i, (p, _) in enumerate(held)])
        await backend.aclose()

    _, loop_wall, loop_cpu = _timed(lambda: asyncio.run(round_()))
    texts, lengths = [t for t, _ in seen], [n for _, n in seen]
    model, tok = backend._model, backend.tokenizer
    _, raw_wall, raw_cpu = _timed(lambda: _bucketed_generate(model, tok, texts, lengths))
    attempts = len(seen)
    return {
        "episodes": len(held),
        "attempts": attempts,
        "loop": {"wall_s": loop_wall, "cpu_s": loop_cpu, "per_cpu_s": attempts / loop_cpu},
        "bucketed": {"wall_s": raw_wall, "cpu_s": raw_cpu, "per_cpu_s": attempts / raw_cpu},
        "ratio": raw_cpu / loop_cpu,
    }


PARTS = (
    "training",
    "decoding",
    "loop",
    "agent_loop",
    "replay",
    "growth",
    "store",
    "litellm",
    "viewer",
)
"""What `run` measures, in this order."""


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def environment() -> dict[str, Any]:
    """The machine and the library versions a measurement ran with."""
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from pedagogy.backends.cores import usable_cores

    versions = {}
    for name in ("torch", "transformers", "trl", "langgraph", "litellm", "sqlalchemy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cores": usable_cores(),
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def run(parts: tuple[str, ...] = PARTS, *, quick: bool = False, progress: Any = None) -> dict:
    """Every measure in `parts` (small sizes with `quick`), with the environment."""
    from pedagogy.errors import ConfigError

    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    say = progress or (lambda text: None)
    out: dict[str, Any] = {"environment": environment(), "quick": quick}
    for part in parts:
        say(f"measuring {part} ...")
        if part == "training":
            out[part] = training_ratio(steps=30 if quick else 150, examples=400 if quick else 2000)
        elif part == "decoding":
            out[part] = decode_ratio(prompts=64 if quick else 400, train_steps=40 if quick else 300)
        elif part == "loop":
            out[part] = loop_ratio(episodes=64 if quick else 1000, train_steps=40 if quick else 300)
        elif part == "agent_loop":
            from pedagogy.benchmarks.throughput_agents import agent_loop_ratio

            out[part] = agent_loop_ratio(
                episodes=32 if quick else 200, train_steps=40 if quick else 300
            )
        elif part == "replay":
            from pedagogy.graphs.replay_bench import replay_throughput

            out[part] = replay_throughput(
                episodes=300 if quick else 10_000, baseline=50 if quick else 1000
            )
        elif part == "growth":
            from pedagogy.benchmarks.throughput_store import growth

            out[part] = growth(small=200, large=600, per_round=200) if quick else growth()
        elif part == "store":
            from pedagogy.benchmarks.throughput_store import store_ratio

            out[part] = store_ratio(per_round=200, rounds=3) if quick else store_ratio()
        elif part == "viewer":
            from pedagogy.benchmarks.throughput_viewer import episodes_page

            out[part] = episodes_page(10_000, 2_000, 3) if quick else episodes_page()
        elif part == "litellm":
            from pedagogy.backends.litellm_bench import litellm_failover, litellm_throughput

            out[part] = litellm_throughput(
                calls=64 if quick else 640,
                repeats=1 if quick else 3,
                paths=("aiohttp", "backend", "workers", "direct"),
            )
            out[part]["failover"] = litellm_failover(
                calls=64 if quick else 640,
                concurrency=64,
                repeats=1 if quick else 3,
                without_breaker=False,
            )
    return out


def _row(what: str, ours: str, base: str, ratio: float | None, target: str, met: bool | None):
    shown = "-" if ratio is None else f"{ratio:.2f}"
    verdict = {True: "met", False: "NOT met", None: "-"}[met]
    return (what, ours, base, shown, target, verdict)


def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(measure, pedagogy, baseline, ratio, target, met) for each measured part."""
    out = []
    if "training" in report:
        t = report["training"]
        out.append(
            _row(
                "training steps per CPU-s (packed vs TRL)",
                f"{t['packed']['steps_per_cpu_s']:.1f}",
                f"{t['trl']['steps_per_cpu_s']:.1f}",
                t["ratio"],
                "-",
                None,
            )
        )
        out.append(
            _row(
                "training padding share (packed vs padded)",
                f"{t['padding_packed']:.1%}",
                f"{t['padding_padded']:.1%}",
                None,
                "-",
                None,
            )
        )
    if "decoding" in report:
        d = report["decoding"]
        for key, name in (("generate", "one generate"), ("bucketed", "bucketed by length")):
            out.append(
                _row(
                    f"decoding tokens per CPU-s (vs {name})",
                    f"{d['decode']['tokens_per_cpu_s']:.0f}",
                    f"{d[key]['tokens_per_cpu_s']:.0f}",
                    d[f"vs_{key}"],
                    "-",
                    None,
                )
            )
    if "loop" in report:
        lp = report["loop"]
        out.append(
            _row(
                f"loop attempts per CPU-s ({lp['episodes']} episodes; vs bucketed generate)",
                f"{lp['loop']['per_cpu_s']:.0f}",
                f"{lp['bucketed']['per_cpu_s']:.0f}",
                lp["ratio"],
                ">= 0.80",
                lp["ratio"] >= 0.8,
            )
        )
    if "agent_loop" in report:
        ag = report["agent_loop"]
        out.append(
            _row(
                f"agent loop steps per CPU-s ({ag['episodes']} episodes; vs bucketed generate)",
                f"{ag['loop']['per_cpu_s']:.0f}",
                f"{ag['bucketed']['per_cpu_s']:.0f}",
                ag["ratio"],
                ">= 0.80",
                ag["ratio"] >= 0.8,
            )
        )
        out.append(
            _row(
                "  the same vs the backend's decoding of every step at once",
                f"{ag['loop']['per_cpu_s']:.0f}",
                f"{ag['one_batch']['per_cpu_s']:.0f}",
                ag["vs_one_batch"],
                "-",
                None,
            )
        )
    if "replay" in report:
        r = report["replay"]
        best = max(
            (v for k, v in r.items() if k.startswith("replay_run")), key=lambda v: v["per_s"]
        )
        out.append(
            _row(
                f"replay episodes/s ({r['episodes']} episodes; vs direct node calls)",
                f"{best['per_s']:.0f}",
                f"{r['direct']['per_s']:.0f}",
                best["vs_direct"],
                ">= 5000/s",
                best["per_s"] >= 5000 and best["model_calls"] == 0 and best["mismatches"] == 0,
            )
        )
    if "growth" in report:
        g = report["growth"]
        out.append(
            _row(
                f"round store CPU, {g['large']['episodes']} vs {g['small']['episodes']} stored",
                f"{g['large']['round_cpu_s']:.2f} s",
                f"{g['small']['round_cpu_s']:.2f} s",
                g["ratio"],
                "<= 1.2",
                g["ratio"] <= 1.2,
            )
        )
        out.append(
            _row(
                "  the same, reading the whole run again",
                f"{g['large']['full_read_cpu_s']:.2f} s",
                f"{g['small']['full_read_cpu_s']:.2f} s",
                g["full_read_ratio"],
                "-",
                None,
            )
        )
    if "store" in report:
        s = report["store"]
        out.append(
            _row(
                f"store turns per CPU-s ({s['turns']} turns; vs Core executemany)",
                f"{s['store']['per_cpu_s']:.0f}",
                f"{s['core']['per_cpu_s']:.0f}",
                s["ratio"],
                ">= 0.90, >= 20000/s",
                s["ratio"] >= 0.9 and s["store"]["per_cpu_s"] >= 20_000,
            )
        )
    if "viewer" in report:
        v = report["viewer"]
        for name, ms in v["pages"].items():
            out.append(
                _row(
                    f"viewer episodes page at {v['episodes']} episodes, {name} (median ms)",
                    f"{ms['median']:.0f} ms",
                    "",
                    None,
                    "< 300 ms",
                    ms["median"] < 300,
                )
            )
    if "litellm" in report:
        li = report["litellm"]
        for path in ("backend", "workers", "direct"):
            p = li["paths"].get(path)
            if p is None:
                continue
            ratio = p["ratio_to_ideal"]["median"]
            label = {
                "backend": "one process",
                "workers": f"workers={li['workers']}",
                "direct": "transport: direct, one process",
            }[path]
            out.append(
                _row(
                    f"litellm calls/s, {li['concurrency']} at {li['latency_s']:.1f} s ({label})",
                    f"{p['calls_per_s']['median']:.0f}, "
                    f"{p['cpu_ms_per_call']['median']:.2f} CPU-ms/call",
                    f"{li['ideal_calls_per_s']:.0f} ideal",
                    ratio,
                    ">= 0.80",
                    ratio >= 0.8,
                )
            )
            est = p.get("idle_estimate")
            if est is not None:
                out.append(
                    _row(
                        "  ESTIMATE, an upper bound on idle cores from CPU-ms/call (not measured)",
                        "",
                        "",
                        est,
                        ">= 0.80",
                        None,
                    )
                )
    fo = report.get("litellm", {}).get("failover")
    if fo is not None:
        out.append(
            _row(
                f"litellm {fo['calls']} calls ({fo['concurrency']} in flight), primary down "
                "+ fallback vs fallback alone",
                f"{fo['dead_primary']['wall_s']['median']:.2f} s",
                f"{fo['fallback_alone']['wall_s']['median']:.2f} s",
                fo["ratio"]["median"],
                "<= 1.2",
                fo["ratio"]["median"] <= 1.2,
            )
        )
    return out
