"""The agents benchmark: teach a student to act with tools, or to write its reasoning out?

Arms (`arms/agents.yaml`), each an ordinary run of the embedded default with the same student
architecture, seeds, explanation budget and fine-tuning steps; only how the teacher teaches
differs:

- `cot`: chain-of-thought distillation: the student answers in text, wrong attempts get the
  scripted teacher's worked solution, SFT on the verified traces (`agent.enabled: false`).
- `agent`: agent distillation: the student acts step by step with the domain's tools (calculator,
  retrieve), wrong attempts get the teacher's demonstration (a trajectory of real tool calls: one
  calculator call per operation), trajectory SFT (`agent.enabled: true`).
- `agent+ftp_sag`: `agent` plus self-consistent action generation (3 sampled candidate steps, the
  majority of those that parse and execute; an inference-time method, so on held-out problems
  only, `agent.sag_on: evaluation`) and the first-thought prefix. FTP starts an LLM teacher's
  first step from the worked solution's first line; the scripted teacher ignores it, so here
  the arm trains like `agent` and differs from it by how its student acts when measured.
- `agent_whole` (named with --arms only): one calculator call for the whole expression.

Domains: `chain_sum` (the default domain, five levels) and `world` (made-up facts found with a
BM25 `retrieve` tool returning the best document; level = hops - 1). The world's trajectories
are long for a character-level student (a re-attempt shows the demonstration before the
problem), so its student gets more positions (RoPE: no new parameters), longer answers and
steps, demonstrations without thought lines, and fewer optimiser steps per job (each costs more).

Every arm is paired with `cot` seed by seed (same initial weights, problems and held-out set);
the verdict is the paired difference on the hard levels with a 95% t-interval. Runs, resumption
and the JSON file work as in `pedagogy.benchmarks.core`; what the trajectories show is
`pedagogy.benchmarks.trajectories`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pedagogy.benchmarks import core
from pedagogy.benchmarks import trajectories as T
from pedagogy.benchmarks.arms import ARMS_DIR, Arm, default_names, dotted_overrides, load_arms, nest
from pedagogy.benchmarks.core import (
    QUICK_LEVELS,
    Bench,
    aggregate,
    format_record,
    level_label,
    plot_arms,
)
from pedagogy.benchmarks.stats import (
    Paired,
    format_paired,
    level_key,
    levels_mean,
    mean_heldout,
    mean_std,
    paired_differences,
    paired_interval,
    paired_of,
    verdict,
)
from pedagogy.benchmarks.trajectories import agent_stats
from pedagogy.config import RunConfig, load_config
from pedagogy.errors import ConfigError

BASELINE = "cot"
ARMS_FILE = ARMS_DIR / "agents.yaml"
ARM_SPECS: dict[str, Arm] = load_arms(ARMS_FILE, budget_share=False)
"""The arms of `arms/agents.yaml`: name, description, whether it runs by default, overrides."""
ARMS: dict[str, dict[str, Any]] = dotted_overrides(ARM_SPECS)
"""Arm -> its dotted overrides."""
DEFAULT_ARMS = default_names(ARM_SPECS)
COMMON: dict[str, Any] = {
    k: v for k, v in ARMS.get(BASELINE, {}).items() if not k.startswith("agent.")
}
"""What every arm shares with cot outside the agent section: uniform practice, explain wrong
attempts in plan order, worked solutions, SFT (the learning bench's standard_kd)."""
FTP_NOTE = (
    "note: FTP (first-thought prefix) applies only to LLM teachers; with the scripted teacher "
    "it is a no-op, so agent+ftp_sag differs from agent by SAG alone (3 candidate steps a step, "
    "on held-out problems)"
)


@dataclass(frozen=True)
class BenchDomain:
    """A domain of the bench and the levels its target is measured on."""

    name: str
    target: float
    """The agent arm's least paired gain over cot on the hard levels (accuracy, 0-1)."""
    what: str
    """The hard levels in words."""
    hard: tuple[str, ...] | None = None
    """Those levels; None: the domain's two hardest (the last two held-out levels)."""


DOMAINS: dict[str, BenchDomain] = {
    "chain_sum": BenchDomain("chain_sum", 0.30, "the two hardest levels"),
    "world": BenchDomain("world", 0.20, "2-hop questions", ("facts@1",)),
}


@dataclass(frozen=True)
class AgentBenchSettings:
    """What every arm shares. Runs under one --out must share these (seeds and arms may grow)."""

    rounds: int = 3
    episodes: int = 200
    """Episodes per round on chain_sum."""
    budget: int | None = None
    """Explanations (demonstrations) per round; None: a quarter of the domain's episodes."""
    train_steps: int | None = 150
    """Optimiser steps per fine-tuning job on chain_sum (the same for every arm)."""
    train_seconds: float = 600.0
    """Time limit per job: a safety net, far above what the steps take, so that the steps bind
    (the world's long trajectories train several times slower per step than arithmetic)."""
    heldout_per_arm: int = 24
    """Held-out problems per level (an acting student's evaluation is up to `max_steps`
    generations per problem, three times more with SAG)."""
    max_steps: int = 5
    """Agent arms: steps per attempt (the hardest problems need 4: three calls or lookups, then
    the answer). An untrained student fills every step with noise, which is most of a run's
    generation: each step more costs a sixth more."""
    step_tokens: int = 32
    """Agent arms: tokens per step on chain_sum (a per-step call is ~22 characters)."""
    n_entities: int = 60
    """Size of the world (60: ~250 facts, ~300 2-hop questions)."""
    world_levels: tuple[int, ...] = (0, 1)
    """The world's levels practised and held out: 1- and 2-hop questions (the target's). 3-hop
    trajectories are the longest (~650 characters), and training time grows with length."""
    world_positions: int = 1024
    """The world student's positions (the tiny student's default is 256): a 2-hop re-attempt
    (the demonstration, the problem, the student's own steps) is ~900 characters."""
    world_max_tokens: int = 120
    """The world student's answer length (cot: a 2-hop solution is up to ~110 characters)."""
    world_max_steps: int = 3
    """The world agent's steps per attempt (2 hops: two lookups, then the answer)."""
    world_step_tokens: int = 48
    """The world agent's tokens per step (a lookup is up to ~45 characters)."""
    world_episodes: int = 96
    """Episodes per round on the world (its episodes are ~3x longer)."""
    world_train_steps: int | None = 100
    """Optimiser steps per job on the world (its trajectories are ~3x longer than chain_sum's,
    so a step costs ~3x more)."""
    world_k: int = 1
    """Documents a world lookup returns (the retrieve tool's `k`): the demonstrations' queries
    name the entity and the relation, so the best match is the fact; more documents make every
    trajectory longer and give the student distractors to copy from."""
    quick: bool = False
    """Tiny sizes and two chain_sum levels, for tests."""

    def sizes(self, domain: str) -> tuple[int, int, int | None]:
        """(episodes per round, explanations per round, optimiser steps per job) on `domain`."""
        world = domain == "world" and not self.quick
        episodes = self.world_episodes if world else self.episodes
        budget = self.budget if self.budget is not None else max(1, episodes // 4)
        return episodes, budget, self.world_train_steps if world else self.train_steps

    @classmethod
    def quick_settings(cls) -> AgentBenchSettings:
        return cls(
            rounds=2,
            episodes=24,
            train_steps=20,
            train_seconds=3.0,
            heldout_per_arm=6,
            n_entities=30,
            quick=True,
        )


def run_key(domain: str, arm: str) -> str:
    """How a run is named in bench.json: `world/agent`."""
    return f"{domain}/{arm}"


def split_key(key: str) -> tuple[str, str]:
    domain, _, arm = key.partition("/")
    return domain, arm


def parse_names(
    text: str | None, known: Sequence[str], default: Sequence[str], what: str
) -> list[str]:
    """`--arms a,b` / `--domains a,b` -> names checked against `known`; None: `default`."""
    if text is None:
        return list(default)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--{what} {text!r} names nothing; choose from: {', '.join(known)}")
    for n in names:
        if n not in known:
            raise ConfigError(
                f"unknown {what[:-1]} {n!r} in --{what}; choose from: {', '.join(known)}"
            )
    return list(dict.fromkeys(names))


def domain_overrides(domain: str, settings: AgentBenchSettings, base: RunConfig) -> dict[str, Any]:
    """Nested overrides that put a run on `domain` (the same for every arm)."""
    if domain == "chain_sum":
        if not settings.quick:
            return {}
        options = {**base.domain.options, "levels": {"chain_sum": QUICK_LEVELS}}
        return {"domain": {"options": options}}
    if domain == "world":
        tiny = dict(base.student.options.get("tiny") or {})
        student_options = {
            **base.student.options,
            "tiny": {**tiny, "max_position": settings.world_positions},
        }
        return {
            "domain": {
                "name": "world",
                "options": {
                    "seed": 0,
                    "n_entities": settings.n_entities,
                    "demo_thoughts": False,
                },
            },
            "student": {"max_tokens": settings.world_max_tokens, "options": student_options},
            "curriculum": {"arms": [f"facts@{level}" for level in settings.world_levels]},
        }
    raise ConfigError(f"unknown domain {domain!r}; choose from: {', '.join(DOMAINS)}")


def arm_config(key: str, seed: int, settings: AgentBenchSettings, out: Path) -> RunConfig:
    """The run config of one (domain/arm, seed): the default, the domain, the shared sizes, the
    arm."""
    domain, arm = split_key(key)
    if arm not in ARMS:
        raise ConfigError(f"unknown arm {arm!r}; choose from: {', '.join(ARMS)}")
    base = load_config(None)
    episodes, budget, train_steps = settings.sizes(domain)
    shared: dict[str, Any] = {
        "name": f"bench-agents-{domain}-{arm}-s{seed}",
        "seed": seed,
        "rounds": settings.rounds,
        "workdir": str(out / "work"),
        "db": str(out / "bench.db"),
        "episodes": {"per_round": episodes, "explain_budget": budget},
        "training": {"max_seconds": settings.train_seconds, "max_steps": train_steps},
        # Every arm runs every round: an early stop would compare arms at different rounds.
        "evaluation": {"heldout_per_arm": settings.heldout_per_arm, "patience": None},
    }
    if settings.quick:
        shared["episodes"]["write_batch"] = 16
    world = domain == "world"
    shared["agent"] = {
        "max_steps": settings.world_max_steps if world else settings.max_steps,
        "step_tokens": settings.world_step_tokens if world else settings.step_tokens,
    }
    if world:
        shared["agent"]["tool_options"] = {"retrieve": {"k": settings.world_k}}
    try:
        cfg = base.with_overrides(domain_overrides(domain, settings, base))
        return cfg.with_overrides(shared).with_overrides(nest(ARMS[arm]))
    except ConfigError as err:
        raise ConfigError(f"arm {key!r}: {str(err).removeprefix('overrides: ')}") from None


# -- aggregation -------------------------------------------------------------------------------


def hard_levels(domain: str, levels: Sequence[str]) -> list[str]:
    """The levels a domain's target is measured on, among the held-out `levels`."""
    spec = DOMAINS[domain]
    if spec.hard is not None:
        return [lv for lv in spec.hard if lv in levels]
    return sorted(levels, key=level_key)[-2:]


def summarise(runs: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Per domain/arm: `core.aggregate`'s numbers, the hard levels' mean, the paired
    differences to the domain's cot arm (mean over levels: "paired"; hard levels:
    "paired_hard"), the held-out agent metrics and the training trajectories' numbers, each
    averaged over seeds."""
    summary = aggregate(runs, keys)
    for key, s in summary.items():
        domain, arm = split_key(key)
        done = [r for r in runs if r["arm"] == key and r["status"] == "completed"]
        hard = hard_levels(domain, list(s["accuracy"]))
        metric = levels_mean(hard)
        s["hard_levels"] = hard
        s["hard"] = _ms([v for r in done if (v := metric(r)) is not None])
        if arm != BASELINE:
            base = run_key(domain, BASELINE)
            for name, m in (("paired", mean_heldout), ("paired_hard", metric)):
                diffs = paired_differences(runs, key, base, m)
                s[name] = paired_interval(list(diffs.values())).as_dict()
        s["heldout_agent"] = T.mean_metrics([r.get("heldout_agent") or {} for r in done])
        s["trajectories"] = T.mean_trajectories([r.get("trajectories") or {} for r in done])
    return summary


def _ms(values: Sequence[float]) -> dict[str, float]:
    m, sd = mean_std(values)
    return {"mean": m, "std": sd}


# -- the bench -----------------------------------------------------------------------------------


@dataclass
class AgentBench(Bench):
    """`pedagogy bench agents`: arms = `domain/arm` keys (see `run_key`)."""

    baseline: str = BASELINE

    def overrides(self, key: str) -> dict[str, Any]:
        domain, arm = split_key(key)
        nested = domain_overrides(domain, self.settings, load_config(None))
        return {"domain": nested, "arm": ARMS[arm]}

    def config(self, key: str, seed: int) -> RunConfig:
        return arm_config(key, seed, self.settings, self.out)

    async def run_record(self, key: str, seed: int, config: RunConfig) -> dict[str, Any]:
        domain, arm = split_key(key)
        record = await core.run_one(key, seed, config, extra=agent_stats)
        return {**record, "domain": domain, "method": arm}

    def format_record(self, r: dict[str, Any]) -> str:
        line = format_record(r)
        agent = T.mean_metrics([r.get("heldout_agent") or {}])
        if r["status"] == "completed" and agent:
            line += (
                f" · held-out {agent.get('mean_tool_calls', 0):.1f} calls/problem, "
                f"{100 * agent.get('invalid_action_rate', 0):.0f}% invalid steps"
            )
        return line

    def summarise(self, runs: Sequence[dict[str, Any]], arms: Sequence[str]) -> dict[str, Any]:
        return summarise(runs, arms)

    def plot(self, summary: dict[str, Any]) -> Path:
        return plot_agents(summary, self.png_path)


def by_domain(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{domain: {arm: its summary}} in the summary's order."""
    out: dict[str, dict[str, Any]] = {}
    for key, s in summary.items():
        domain, arm = split_key(key)
        out.setdefault(domain, {})[arm] = s
    return out


def plot_agents(summary: dict[str, Any], path: Path) -> Path:
    """One panel per domain: held-out accuracy per level and the mean, one bar per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    domains = by_domain(summary)
    fig, axes = plt.subplots(
        1, max(len(domains), 1), figsize=(6.5 * max(len(domains), 1), 4.5), squeeze=False
    )
    for ax, (domain, arms) in zip(axes[0], domains.items()):
        plot_arms(ax, arms)
        spec = DOMAINS[domain]
        ax.set_title(f"{domain} (target: {spec.what}, {100 * spec.target:+.0f} points)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table_rows(arms: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one domain's table."""
    levels = sorted({lv for s in arms.values() for lv in s["accuracy"]}, key=level_key)
    hard = next(iter(arms.values()))["hard_levels"] if arms else []
    hard_name = "+".join(level_label(lv) for lv in hard)
    header = [
        "arm",
        "seeds",
        *[level_label(lv) for lv in levels],
        "mean",
        f"hard: {hard_name}",
        "Δhard vs cot [95% CI]",
        "Δmean vs cot [95% CI]",
        "calls/problem",
        "invalid steps",
        "teacher tokens",
        "s/run",
    ]
    rows = []
    for arm, s in arms.items():
        agent = s.get("heldout_agent") or {}
        rows.append(
            [
                arm,
                str(len(s["seeds"])),
                *[_pm(s["accuracy"][lv]) if lv in s["accuracy"] else "-" for lv in levels],
                _pm(s["mean_accuracy"]),
                _pm(s["hard"]),
                format_paired(_paired(s, "paired_hard")),
                format_paired(_paired(s, "paired")),
                f"{agent['mean_tool_calls']:.2f}" if "mean_tool_calls" in agent else "-",
                f"{100 * agent['invalid_action_rate']:.0f}%"
                if "invalid_action_rate" in agent
                else "-",
                f"{s['teacher_tokens']['mean']:.0f}",
                f"{s['seconds']['mean']:.0f}",
            ]
        )
    return header, rows


def _pm(c: dict[str, float]) -> str:
    if math.isnan(c["mean"]):
        return "-"
    return f"{c['mean']:.2f}±{c['std']:.2f}"


def _paired(s: dict[str, Any], name: str) -> Paired:
    return paired_of({"paired": s.get(name)})


def target_lines(summary: dict[str, Any]) -> list[str]:
    """The verdicts: each agent arm against cot on each domain's hard levels (the `agent` arm's
    is the target), agent+ftp_sag against agent, and the FTP note."""
    lines = []
    domains = by_domain(summary)
    for domain, arms in domains.items():
        if BASELINE not in arms:
            continue
        spec = DOMAINS[domain]
        what = spec.what
        if spec.hard is None:  # name the levels it found
            what += f" ({', '.join(level_label(lv) for lv in arms[BASELINE]['hard_levels'])})"
        for arm, s in arms.items():
            if arm == BASELINE:
                continue
            lines.append(
                verdict(
                    f"{domain}: {arm} vs cot on {what}",
                    _paired(s, "paired_hard"),
                    spec.target,
                )
            )
    if any("agent+ftp_sag" in arms for arms in domains.values()):
        lines.append(FTP_NOTE)
    return lines


def sag_lines(runs: Sequence[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """agent+ftp_sag against agent, paired, on each domain's hard levels."""
    lines = []
    for domain, arms in by_domain(summary).items():
        if "agent" in arms and "agent+ftp_sag" in arms:
            metric = levels_mean(arms["agent"]["hard_levels"])
            diffs = paired_differences(
                runs, run_key(domain, "agent+ftp_sag"), run_key(domain, "agent"), metric
            )
            p = paired_interval(list(diffs.values()))
            lines.append(
                f"{domain}: agent+ftp_sag vs agent on {DOMAINS[domain].what}: "
                f"{format_paired(p)} points"
                + ("" if p.n < 2 else f" ({'excludes' if p.excludes_zero else 'includes'} zero)")
            )
    return lines
