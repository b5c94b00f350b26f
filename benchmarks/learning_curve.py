"""Benchmark: the default loop's learning curve without the graph, to pick its settings.

Simulates what `pedagogy run` does with the tiny student, minus agents and storage: each round
samples chain_sum problems over the unlocked levels, takes the scripted teacher's worked
solutions as completions, mixes earlier rounds' data back in, fine-tunes with `run_sft` under a
time budget, reloads the backend and evaluates every level on a fixed held-out set. Prints the
per-round accuracy per level and the seconds spent in each phase.

    python -m pedagogy.benchmarks.learning_curve            # the tuned defaults
    python -m pedagogy.benchmarks.learning_curve --rounds 6 --seconds-per-round 40
    python -m pedagogy.benchmarks.learning_curve --steps-per-round 600   # reproducible sweeps

Measured with the defaults (2 cores, nothing else running, seed 0; seed 1 alike), held-out
accuracy per level after each 30 s round (~420 steps of 16):

    round    L0    L1    L2    L3    L4     elapsed
        1   .28   .23   .12   .05   .03       42 s
        3   .92   .67   .53   .30   .12      104 s
        5   .96   .86   .73   .52   .24      167 s
        6   .98   .91   .87   .59   .30      198 s
        8  1.00   .97   .96   .65   .34      261 s
       10  1.00   .98   .91   .67   .36      323 s

Levels: 1-digit a±b; 2-3 and 2-4 terms of 1 digit; a±b of 1-2 digits; 2-4 terms of 1-3 digits.
Each round costs ~30 s training + ~1 s setup + ~1 s evaluation of 450 held-out problems.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pedagogy.training.tiny import DEFAULT_CHAIN_SUM_LEVELS, DEFAULT_STUDENT


@dataclass
class CurveRecipe:
    """This bench's settings: a time budget per round on the tiny student (the default run's
    settings are its config, bounded by steps)."""

    rounds: int = 8
    seconds_per_round: float = 30.0
    """Training budget of each fine-tuning job (~420 steps of 16 on 2 cores)."""
    problems_per_round: int = 1000
    """New problems per round; ~650 remain after removing held-out prompts. 300/round overfits
    (memorised, held-out accuracy half as good); 1500-3000/round learns slower per step."""
    replay: int = 4000
    """At most this many earlier examples mixed into each job."""
    learning_rate: float = 1e-3
    """2e-3 learns faster on lucky seeds but stalls on others; 3e-3 diverges."""
    batch_size: int = 16
    warmup_steps: int = 20
    lr_scheduler: str = "constant_with_warmup"
    """A cosine decay inside each job was worse (.77 vs .88 on the 2-digit level)."""
    group_by_length: bool = False
    """2x the steps per second but half the progress per step: no gain."""
    heldout_per_level: int = 100
    schedule: str = "uniform"
    range_mode: str = "inclusive"
    """ReasoningGymDomain(range_mode=...): inclusive (levels 0..i) or upper_bound (exactly i)."""


RECIPE = CurveRecipe()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    d = RECIPE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=d.rounds, help="fine-tuning rounds")
    p.add_argument(
        "--seconds-per-round", type=float, default=d.seconds_per_round, help="training budget"
    )
    p.add_argument(
        "--steps-per-round",
        type=int,
        default=None,
        help="fixed optimiser steps per round instead of a time budget (reproducible sweeps)",
    )
    p.add_argument(
        "--problems-per-round", type=int, default=d.problems_per_round, help="new problems/round"
    )
    p.add_argument(
        "--replay", type=int, default=d.replay, help="earlier examples mixed into each job (cap)"
    )
    p.add_argument("--lr", type=float, default=d.learning_rate, help="AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size")
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help="warmup steps per job")
    p.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=d.group_by_length,
        help="batch examples of similar length together",
    )
    p.add_argument(
        "--scheduler", type=str, default=d.lr_scheduler, help="learning-rate schedule per job"
    )
    p.add_argument("--hidden", type=int, default=DEFAULT_STUDENT.hidden_size, help="hidden size")
    p.add_argument("--layers", type=int, default=DEFAULT_STUDENT.num_layers, help="layers")
    p.add_argument("--heads", type=int, default=DEFAULT_STUDENT.num_heads, help="attention heads")
    p.add_argument(
        "--levels",
        type=str,
        default=json.dumps(DEFAULT_CHAIN_SUM_LEVELS),
        help="JSON list of chain_sum curriculum attribute levels",
    )
    p.add_argument(
        "--range-mode",
        choices=["inclusive", "upper_bound"],
        default=d.range_mode,
        help="a level's attribute ranges: inclusive (levels 0..i) or exactly level i",
    )
    p.add_argument(
        "--schedule",
        choices=["uniform", "unlock"],
        default=d.schedule,
        help="uniform over all levels, or unlock the next level at --unlock-at accuracy",
    )
    p.add_argument("--unlock-at", type=float, default=0.6, help="accuracy that unlocks a level")
    p.add_argument("--heldout", type=int, default=d.heldout_per_level, help="held-out per level")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--seed", type=int, default=0, help="seed for model init and sampling")
    p.add_argument("--workdir", type=str, default=None, help="where model versions go (tmp)")
    p.add_argument("--json", type=str, default=None, help="also write the results to this file")
    return p.parse_args(argv)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table_row(label: str, acc: list[float], extra: str = "") -> str:
    return f"{label:>6} " + " ".join(f"{a:5.2f}" for a in acc) + f"  {extra}"


async def _bench(args: argparse.Namespace) -> dict:
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.domains.reasoning_gym import ReasoningGymDomain
    from pedagogy.training.evaluate import accuracy, build_heldout, evaluate, heldout_prompts
    from pedagogy.training.sft import SFTJobConfig, run_sft, warm_up
    from pedagogy.training.tiny import TinyStudentConfig, build_tiny_student

    t_start = time.monotonic()
    warm_up()
    levels = json.loads(args.levels)
    domain = ReasoningGymDomain(
        skills=["chain_sum"],
        levels={"chain_sum": levels},
        compact=True,
        range_mode=args.range_mode,
    )
    arms = [("chain_sum", i) for i in range(len(levels))]
    rng = random.Random(args.seed)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pedagogy-bench-"))
    student = TinyStudentConfig(
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        intermediate_size=4 * args.hidden,
    )
    path = build_tiny_student(workdir / "v0", student, seed=args.seed)
    heldout = build_heldout(domain, arms, args.heldout, seed=10_000 + args.seed)
    exclude = heldout_prompts(heldout)
    backend = TransformersBackend(path, version_id="v0", threads=args.threads)

    print(f"levels: {levels}")
    print(f"held-out sizes: {[len(heldout[a]) for a in arms]}; workdir {workdir}")
    header = "round  " + " ".join(f"  L{i}  " for i in range(len(arms)))
    print(header + "  phases (s)")
    t = time.monotonic()
    acc = accuracy(await evaluate(backend, domain, heldout))
    rows = [{"round": 0, "acc": [acc[a] for a in arms], "eval_s": time.monotonic() - t}]
    print(_table_row("0", rows[0]["acc"], f"eval {rows[0]['eval_s']:.1f}"))

    data: list[tuple[str, str]] = []
    unlocked = 1 if args.schedule == "unlock" else len(arms)
    for r in range(1, args.rounds + 1):
        t = time.monotonic()
        new: list[tuple[str, str]] = []
        per_arm = max(1, args.problems_per_round // unlocked)
        for arm in arms[:unlocked]:
            for problem in domain.generate(rng, per_arm, *arm):
                if problem.prompt in exclude:
                    continue
                solution = domain.solve(problem)
                if solution is not None:
                    new.append((problem.prompt, solution))
        replay = rng.sample(data, min(len(data), args.replay))
        job = new + replay
        rng.shuffle(job)
        data.extend(new)
        gen_s = time.monotonic() - t

        out = workdir / f"v{r}"
        config = SFTJobConfig(
            learning_rate=args.lr,
            batch_size=args.batch_size,
            max_steps=args.steps_per_round or 100_000,
            max_seconds=None if args.steps_per_round else args.seconds_per_round,
            warmup_steps=args.warmup,
            lr_scheduler=args.scheduler,
            group_by_length=args.group_by_length,
            seed=args.seed + r,
            threads=args.threads,
        )
        result = run_sft(path, out, job, config)
        path = out
        t = time.monotonic()
        await backend.areload(path, f"v{r}")
        reload_s = time.monotonic() - t
        t = time.monotonic()
        acc = accuracy(await evaluate(backend, domain, heldout))
        eval_s = time.monotonic() - t
        row = {
            "round": r,
            "acc": [acc[a] for a in arms],
            "examples": len(job),
            "steps": result.steps,
            "loss": result.final_loss,
            "gen_s": gen_s,
            "setup_s": result.setup_seconds,
            "train_s": result.seconds,
            "reload_s": reload_s,
            "eval_s": eval_s,
            "elapsed_s": time.monotonic() - t_start,
        }
        rows.append(row)
        if args.schedule == "unlock" and unlocked < len(arms):
            if row["acc"][unlocked - 1] >= args.unlock_at:
                unlocked += 1
        print(
            _table_row(
                str(r),
                row["acc"],
                f"gen {gen_s:.1f} train {result.seconds:.1f} (setup {result.setup_seconds:.1f}, "
                f"{result.steps} steps, {len(job)} ex, loss {_fmt(result.final_loss)}) "
                f"reload {reload_s:.2f} eval {eval_s:.1f} | {row['elapsed_s']:.0f}s",
            )
        )
    await backend.aclose()
    total = time.monotonic() - t_start
    final = rows[-1]["acc"]
    reached = sum(a >= 0.8 for a in final)
    print(f"total {total:.0f}s; levels at >= .80: {reached}/{len(arms)}; final {final}")
    return {"args": vars(args), "rows": rows, "total_s": total, "levels_at_80": reached}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    results = asyncio.run(_bench(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
