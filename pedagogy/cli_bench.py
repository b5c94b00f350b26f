"""`pedagogy bench`: teaching arms compared under the same seeds and budget (learning,
agents), and each part's throughput against its baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pedagogy.cli_common import JOBS_HELP, PLUGIN_HELP, console, err_console, fail, use_plugins
from pedagogy.errors import ConfigError, PedagogyError


def bench_learning(
    seeds: int | None = typer.Option(
        None, "--seeds", min=1, help="Seeds per arm: 0..N-1 (default 3; --quick: 1)."
    ),
    budget: int | None = typer.Option(
        None,
        "--budget",
        min=0,
        help="Teacher explanations per round, the same for every arm (default: a quarter of the episodes per round).",
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Teaching rounds per run (default 3; --quick: 2)."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="A tiny bench for tests/CI: 2 levels, 2 rounds of 48 episodes, 3 s training, 1 seed, 2 arms.",
    ),
    out: Path = typer.Option(
        Path("pedagogy-bench"),
        "--out",
        help="Folder for bench.json, bench.png and the runs' database; a rerun skips runs done there.",
    ),
    arms: str | None = typer.Option(
        None,
        "--arms",
        help="Comma-separated arms (default: the 15 marked default in benchmarks/arms/learning.yaml; --quick: standard_kd,pedagogy); the file lists more.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the per-arm summary as JSON instead of a table."
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        min=1,
        help=JOBS_HELP,
    ),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Run several teaching arms with the same seeds, student and teacher budget; compare held-out accuracy."""
    from dataclasses import replace

    try:
        # Inside the try: a bad arms file (loaded on import) is one line, exit 2.
        from pedagogy.benchmarks.learning import (
            BenchSettings,
            LearningBench,
            parse_arms,
            table_rows,
            target_lines,
        )

        use_plugins(plugin)
        settings = BenchSettings.quick_settings() if quick else BenchSettings()
        update: dict[str, Any] = {}
        if rounds is not None:
            update["rounds"] = rounds
        settings = replace(settings, **update, budget=budget)  # None: a quarter of the episodes
        bench = LearningBench(
            out,
            settings,
            parse_arms(arms, quick),
            list(range(seeds or (1 if quick else 3))),
            jobs=jobs,
        )
        data = bench.run()
    except PedagogyError as err:
        fail(err)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted; finished runs are in {out / 'bench.json'}; rerun the same command to continue"
        )
        raise typer.Exit(130) from None
    summary = data["summary"]
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    header, rows = table_rows(summary)
    s = data["settings"]
    wide = _print_table(
        f"held-out accuracy after {s['rounds']} rounds of {s['episodes']} episodes, budget "
        f"{s['budget']}/round (mean±std over seeds; Δ: paired over seeds, points)",
        header,
        rows,
    )
    for line in target_lines(summary):
        wide.print(line, highlight=False, soft_wrap=True)
    console.print(f"results    {bench.json_path}")
    console.print(f"plot       {bench.png_path}")
    console.print(f"database   {out / 'bench.db'}")
    _exit_if_failed(data["failed"])


def _exit_if_failed(failed: list[dict[str, Any]]) -> None:
    """A bench's failed runs: one line naming the first, exit 1 (a rerun retries them)."""
    if not failed:
        return
    first = failed[0]
    err_console.print(
        f"[bold red]error:[/] {len(failed)} run(s) failed, e.g. "
        + escape(
            f"{first['arm']} seed {first['seed']}: {first.get('error')}; "
            "rerun the same command to retry them"
        ),
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(1)


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> Console:
    """A comparison table, every digit kept when the output is a file; returns the console."""
    table = Table(title=title)
    for i, name in enumerate(header):
        width = max([len(name)] + [len(row[i]) for row in rows])
        table.add_column(
            name, justify="left" if i == 0 else "right", no_wrap=True, min_width=min(width, 14)
        )
    for row in rows:
        table.add_row(*row)
    wide = console if console.is_terminal else Console(width=240)
    wide.print(table)
    return wide


def bench_agents(
    seeds: int | None = typer.Option(
        None, "--seeds", min=1, help="Seeds per arm and domain: 0..N-1 (default 3; --quick: 1)."
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Teaching rounds per run (default 3; --quick: 2)."
    ),
    episodes: int | None = typer.Option(
        None,
        "--episodes",
        min=4,
        help="Episodes per round (default: 200 on chain_sum, 96 on the world; this sets both; the "
        "budget stays a quarter of them unless --budget).",
    ),
    budget: int | None = typer.Option(
        None,
        "--budget",
        min=0,
        help="Teacher explanations (demonstrations) per round, the same for every arm.",
    ),
    train_steps: int | None = typer.Option(
        None,
        "--train-steps",
        min=1,
        help="Optimiser steps of each fine-tuning job, the same for every arm (default: 150 on "
        "chain_sum, 100 on the world, whose trajectories are ~3x longer; this sets both).",
    ),
    arms: str | None = typer.Option(
        None,
        "--arms",
        help="Comma-separated arms (default: cot,agent,agent+ftp_sag); also agent_whole "
        "(benchmarks/arms/agents.yaml).",
    ),
    domains: str | None = typer.Option(
        None, "--domains", help="Comma-separated domains (default: chain_sum,world)."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="A tiny bench for tests: 2 chain_sum levels, a 30-entity world, 2 rounds of 24 episodes.",
    ),
    out: Path = typer.Option(
        Path("pedagogy-bench-agents"),
        "--out",
        help="Folder for bench.json, bench.png and the runs' database; a rerun skips runs done there.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the per-arm summary as JSON instead of tables."
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        min=1,
        help=JOBS_HELP,
    ),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """CoT distillation vs agent distillation (vs agent + FTP/SAG) on chain_sum and the world's
    retrieval questions, same seeds, student, budget and training steps; paired 95% intervals."""
    from dataclasses import replace

    try:
        # Inside the try: a bad arms file (loaded on import) is one line, exit 2.
        from pedagogy.benchmarks import agents as A
        from pedagogy.benchmarks.trajectories import trajectory_lines

        use_plugins(plugin)
        settings = A.AgentBenchSettings.quick_settings() if quick else A.AgentBenchSettings()
        update: dict[str, Any] = {}
        if rounds is not None:
            update["rounds"] = rounds
        if episodes is not None:
            update["episodes"] = update["world_episodes"] = episodes
        if train_steps is not None:
            update["train_steps"] = update["world_train_steps"] = train_steps
        settings = replace(settings, **update, budget=budget)  # None: a quarter of the episodes
        arm_names = A.parse_names(arms, list(A.ARMS), A.DEFAULT_ARMS, "arms")
        domain_names = A.parse_names(domains, list(A.DOMAINS), list(A.DOMAINS), "domains")
        keys = [A.run_key(d, a) for d in domain_names for a in arm_names]
        bench = A.AgentBench(
            out, settings, keys, list(range(seeds or (1 if quick else 3))), jobs=jobs
        )
        data = bench.run()
    except PedagogyError as err:
        fail(err)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted; finished runs are in {out / 'bench.json'}; rerun the same command to continue"
        )
        raise typer.Exit(130) from None
    summary = data["summary"]
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    s = data["settings"]
    wide = console if console.is_terminal else Console(width=240)
    for domain, domain_arms in A.by_domain(summary).items():
        header, rows = A.table_rows(domain_arms)
        episodes, budget, steps = settings.sizes(domain)
        title = (
            f"{domain}: held-out accuracy after {s['rounds']} rounds of {episodes} episodes, "
            f"budget {budget}/round, {steps} steps/job (mean±std over seeds; Δ: paired over "
            "seeds, points)"
        )
        wide = _print_table(title, header, rows)
    for line in [
        *A.target_lines(summary),
        *A.sag_lines(data["runs"], summary),
        *trajectory_lines(summary),
    ]:
        wide.print(line, highlight=False, soft_wrap=True)
    console.print(f"results    {bench.json_path}")
    console.print(f"plot       {bench.png_path}")
    console.print(f"database   {out / 'bench.db'}")
    _exit_if_failed(data["failed"])


def bench_throughput(
    parts: str | None = typer.Option(
        None,
        "--parts",
        help="Comma-separated measures (default: all of training,decoding,loop,agent_loop,replay,growth,store,litellm,viewer).",
    ),
    quick: bool = typer.Option(False, "--quick", help="Small sizes, for a check in seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print every number as JSON."),
) -> None:
    """Each part against its baseline, side by side in one process: ratios, targets, verdicts."""
    from pedagogy.benchmarks import throughput as T

    chosen = tuple(p.strip() for p in parts.split(",") if p.strip()) if parts else T.PARTS
    try:
        report = T.run(chosen, quick=quick, progress=lambda text: err_console.print(text))
    except PedagogyError as err:
        fail(err)
        return
    if as_json:
        console.print_json(json.dumps(report, default=str))
        return
    env = report["environment"]
    console.print(
        f"{env['machine']} · {env['cores']} cores · load {env['load_1min']:.1f} · "
        + " ".join(f"{k} {v}" for k, v in env["versions"].items()),
        highlight=False,
    )
    table = Table("measure", "pedagogy", "baseline", "ratio", "target", "met")
    for row in T.rows(report):
        table.add_row(*row)
    console.print(table)


def bench_rollouts(
    actors: str = typer.Option("1,2,4,8", "--actors", help="Comma-separated Ray actor counts."),
    episodes: int = typer.Option(128, "--episodes", help="Episodes a round."),
    latency_s: float = typer.Option(
        0.2, "--latency-s", help="Seconds the stand-in teacher server takes to answer a call."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print every number as JSON."),
) -> None:
    """A round's episodes/s in this process and on 1, 2, 4, 8 Ray actors (needs Ray)."""
    from pedagogy.benchmarks.rollouts import rollouts_vs_actors

    try:
        counts = tuple(int(a) for a in actors.split(",") if a.strip())
    except ValueError:
        fail(ConfigError(f"--actors takes comma-separated integers like 1,2,4, got {actors!r}"))
        return
    try:
        report = rollouts_vs_actors(
            counts,
            episodes=episodes,
            latency_s=latency_s,
            progress=lambda text: err_console.print(text, highlight=False),
        )
    except PedagogyError as err:
        fail(err)
        return
    if as_json:
        console.print_json(json.dumps(report))
        return
    rows = [
        [
            f"{r['actors']} Ray actor(s)" if r["actors"] else "in this process",
            f"{r['episodes_per_s']:.1f}",
            f"{r['vs_in_process']:.2f}",
            f"{r['driver_cpu_ms_per_episode']:.2f}",
            f"{1000 / r['driver_cpu_ms_per_episode']:.0f}"
            if r["driver_cpu_ms_per_episode"]
            else "-",
        ]
        for r in report["rows"]
    ]
    _print_table(
        f"round 2 of a run, {report['episodes']} episodes, teacher latency {report['latency_s']:g} s",
        ["where", "episodes/s", "vs in process", "driver CPU-ms/episode", "driver ceiling/s"],
        rows,
    )
