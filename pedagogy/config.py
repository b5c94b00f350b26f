"""Run configuration: one pydantic model, loaded from YAML, validated with errors that name the fix.

`pedagogy init` writes the commented default (`default_config.yaml` beside this file); running
with no config uses the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pedagogy.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendConfig(_Strict):
    """How one agent's model is called."""

    kind: str = "scripted"
    """scripted | transformers | litellm (an OpenAI-compatible vLLM server goes through litellm
    with api_base; an in-process vLLM engine is not a backend yet)"""
    model: str = ""
    """transformers: a local directory, a hub id, or 'tiny' (build the tiny default student);
    litellm: any litellm model string, e.g. 'openai/gpt-4o-mini'."""
    api_base: str | None = None
    api_key_env: str | None = None
    """NAME of the environment variable holding the API key (the key itself is never stored)."""
    max_concurrency: int = Field(8, ge=1)
    max_tokens: int = Field(96, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend-specific options (transformers: max_batch_size, batch_window_s, threads, device)."""

    def model_post_init(self, context: Any) -> None:
        if self.kind == "litellm" and self.options.get("fallbacks") is not None:
            from pedagogy.backends.litellm import fallback_problems

            problems = fallback_problems(self.options["fallbacks"])
            if problems:
                raise ValueError("; ".join(problems))


class DomainConfig(_Strict):
    name: str = "reasoning_gym"
    options: dict[str, Any] = Field(default_factory=dict)


class GeneratorConfig(_Strict):
    kind: Literal["procedural", "llm"] = "procedural"
    backend: BackendConfig | None = None
    """llm: the generator's model; transformers with model 'tiny' builds a tiny one (options.tiny
    as for the student)."""
    pose: bool = True
    """llm: the LLM poses each round's new problems; false: the domain poses them and the LLM
    only writes refinements (curriculum.refine_by: generator)."""
    train: bool = False
    """Co-evolving generator: after each round, fine-tune the LLM generator on the teacher's
    accepted refinements so far (the student's SFT path); needs a transformers backend."""
    train_steps: int | None = Field(200, ge=1)
    """train: optimiser steps per job (None: only train_seconds bounds it)."""
    train_seconds: float = Field(30.0, gt=0)
    """train: time budget of one job."""
    adapt: bool = False
    """Adapt the sampling parameters inside each level to the student (pedagogy.agents.adaptive):
    over-sample an arm's problems and pose those whose generator settings (e.g. number of terms
    and digits) the student solves near `adapt_target` of the time. Needs a domain that can tell
    a problem's parameters (reasoning-gym can)."""
    adapt_target: float = Field(0.5, ge=0, le=1)
    """adapt: the success rate most wanted."""
    adapt_oversample: int = Field(4, ge=1)
    """adapt: candidates drawn per problem posed."""

    def model_post_init(self, context: Any) -> None:
        if self.train and (
            self.kind != "llm" or self.backend is None or self.backend.kind != "transformers"
        ):
            got = (
                f"backend.kind {self.backend.kind!r}"
                if self.kind == "llm" and self.backend
                else f"kind {self.kind!r}"
                if self.kind != "llm"
                else "no backend"
            )
            raise ValueError(
                f"train: true needs a trainable generator (kind: llm with backend.kind: "
                f"transformers), got {got}; use a transformers backend or set train: false"
            )


class VerifierConfig(_Strict):
    kind: Literal["programmatic", "llm_judge"] = "programmatic"
    backend: BackendConfig | None = None
    """llm_judge: the judge's model; its `max_tokens` and `temperature` are those of each call."""
    judge_samples: int = Field(1, ge=1)
    """llm_judge: judge calls per verdict (odd), decided by majority; each verdict's judge turn
    stores the votes and their agreement (`detail.judge`). More than 1 needs a temperature > 0."""

    def model_post_init(self, context: Any) -> None:
        if self.judge_samples % 2 == 0:
            raise ValueError(
                f"judge_samples {self.judge_samples} is even, so the votes can tie; use "
                f"{self.judge_samples - 1} or {self.judge_samples + 1}"
            )
        if self.judge_samples > 1 and (self.backend is None or self.backend.temperature == 0):
            raise ValueError(
                f"judge_samples {self.judge_samples} at temperature 0 asks the same question "
                "the same way each time; set backend.temperature (e.g. 0.7) or judge_samples: 1"
            )


class CurriculumConfig(_Strict):
    sampler: str = "bandit"
    """bandit (SEC) | uniform | fixed_order (one arm at a time, in order) | zpd (success near
    target) | a plugin's (`register_sampler`); checked when the config loads."""
    temperature: float = Field(0.1, gt=0)
    """bandit: Boltzmann temperature over arm values (lower = greedier)."""
    alpha: float = Field(0.5, gt=0, le=1)
    """bandit: TD(0) step size for arm values."""
    reward: Literal["progress", "advantage"] = "progress"
    """bandit: progress = |change of success rate|; advantage = mean |advantage| vs the arm's mean."""
    explore: float = Field(0.2, ge=0, le=1)
    """bandit, zpd, fixed_order: share of episodes drawn uniformly, so no arm starves."""
    threshold: float = Field(0.8, ge=0, le=1)
    """fixed_order: success rate at which the next arm in order takes over."""
    band: tuple[float, float] = (0.2, 0.8)
    """zpd: [low, high] success rates worth practising; arms outside get only `explore`."""
    target: float = Field(0.5, ge=0, le=1)
    """zpd: the most wanted success rate, inside `band`."""
    arms: list[str] | None = None
    """Restrict to these 'skill@level' arms; default: every skill and level of the domain."""
    skill_graph: bool = False
    """Draw only unlocked arms: each level of a skill requires the level below (and `prerequisites`)."""
    prerequisites: dict[str, list[str]] | None = None
    """skill_graph: extra {arm: [arms it requires]}, e.g. {"carry@0": ["add@1"]}."""
    unlock_at: float = Field(0.6, ge=0, le=1)
    """skill_graph: an arm unlocks once each prerequisite's success rate reaches this."""
    level_chain: bool = True
    """skill_graph: each level requires the level below; false: only `prerequisites` gate."""
    grounded: bool = False
    """SOAR-style grounded reward: the sampler learns from the held-out accuracy per arm of the
    student in service (its measured improvement after training) instead of the round's
    first-attempt success rates. The held-out set then steers the curriculum too."""
    refine: float = Field(0.0, ge=0, lt=1)
    """Failure-driven refinement: share of each round's episodes posed as variants of problems
    the student got wrong in the round before (same arm and shape, other values); 0 = off."""
    refine_variants: int = Field(2, ge=1)
    """refine: variants made from each failed problem (by each author)."""
    refine_by: Literal["domain", "teacher", "generator"] = "domain"
    """refine: who writes the variants. domain: its `variants` method; teacher: the teacher,
    each candidate posed only if the domain's worked solution reaches the answer the teacher
    stated; generator: the LLM generator too (generator.kind: llm), checked the same way."""

    def model_post_init(self, context: Any) -> None:
        from pedagogy.domains.base import parse_arm  # the arm syntax lives with the domains

        if self.refine_by != "domain" and self.refine == 0:
            raise ValueError(
                f"refine_by {self.refine_by!r} does nothing while refine is 0; set refine "
                "(e.g. 0.25) or drop refine_by"
            )
        low, high = self.band
        if not 0 <= low < high <= 1:
            raise ValueError(
                f"band {list(self.band)} must be [low, high] with 0 <= low < high <= 1"
            )
        if not low <= self.target <= high:
            raise ValueError(
                f"target {self.target} is outside band {list(self.band)}; move it inside"
            )
        for arm, required in (self.prerequisites or {}).items():
            for name in [arm, *required]:
                try:
                    parse_arm(name)
                except ConfigError as err:
                    raise ValueError(f"prerequisites: {err}") from None


class EpisodesConfig(_Strict):
    per_round: int = Field(1000, ge=1)
    reattempt: bool = True
    """After an explanation, let the student try again with the explanation in context."""
    explain_budget: int | None = Field(None, ge=0)
    """Explanations the teacher may give per round (None = every wrong attempt)."""
    intervention: str = "always"
    """Which wrong attempts of a round get the budget: always (in plan order), never, random, or
    utility (largest gain in the student's log-probability of the solution; see
    pedagogy.agents.intervention), or a plugin's (`register_policy`); checked when the config
    loads. Decided once per round over all its wrong attempts."""
    intervention_options: dict[str, Any] = Field(default_factory=dict)
    """Options of the policy, e.g. {target: answer} for utility; random's seed defaults to the run's."""
    style: str = "worked"
    """How explanations are told (pedagogy.agents.explanations): worked, concise, detailed,
    adaptive (follows the student's mastery of the arm), probe (picks, each round, the style under
    which the student itself finds the solution likeliest; needs a student with log-probabilities,
    else worked), or a plugin's (`register_style`); checked when the config loads."""
    teacher_mistakes: int = Field(0, ge=0)
    """Tailored learning: show the teacher up to this many of the student's wrong first attempts
    on the same arm from the round before, in its explain prompt (for LLM teachers; the scripted
    teacher's worked solutions do not read its prompt). 0 = off."""
    write_batch: int = Field(250, ge=1)
    """Episodes per database transaction."""
    graph: str | None = None
    """A custom episode graph: a name registered with `register_graph` (by a plugin) or an
    import path "module:function"; None: the ready-made graph (the agent episode graph when
    agent.enabled). A run records the graph it ran with, and `pedagogy replay` uses it."""


class SandboxConfig(_Strict):
    """Limits of one code execution (the `python` tool, the code domain's tests)."""

    wall_s: float = Field(5.0, gt=0)
    cpu_s: float = Field(5.0, gt=0)
    memory_mb: int = Field(256, ge=16)
    processes: int = Field(32, ge=1)
    file_size_mb: int = Field(8, ge=1)
    output_chars: int = Field(2000, ge=64)


class AgentConfig(_Strict):
    """Episodes in which the student acts with tools (the agent episode graph)."""

    enabled: bool = False
    """Run agent episodes: the student alternates step -> tool -> observation until it answers;
    a wrong answer gets the teacher's demonstration trajectory; training is trajectory SFT."""
    tools: list[str] | None = None
    """Tools the agent may call (registered names: calculator, python, retrieve, or your own);
    None: the ones the domain names (its `tools()`), else calculator."""
    tool_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Options per tool, merged over the domain's (e.g. {retrieve: {k: 2}})."""
    max_steps: int = Field(6, ge=1)
    """Most model turns per attempt; an attempt without an answer by then is wrong."""
    step_tokens: int = Field(48, ge=1)
    """Most tokens of one step (thought + action)."""
    demo: Literal["per_step", "whole"] = "per_step"
    """The scripted teacher's arithmetic demonstrations: one calculator call per operation, or
    one call for the whole expression."""
    explain: Literal["demonstration", "text"] = "demonstration"
    """What a wrong attempt gets: the teacher's tool-using trajectory, or a text explanation."""
    sag_n: int = Field(1, ge=1)
    """Self-consistent action generation: sample this many candidate steps (temperature
    `sag_temperature`), keep those that parse and execute, take the majority (1 = off)."""
    sag_temperature: float = Field(0.7, gt=0)
    sag_on: Literal["evaluation", "all"] = "evaluation"
    """Where SAG samples: evaluation (held-out only: an inference-time method, as in Agent
    Distillation; practice acts greedily) or all (practice attempts too, 'sag_n' times the
    generation)."""
    ftp: bool = False
    """First-thought prefix: an LLM teacher's first step starts from the first line of the
    domain's worked solution."""
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)


MAX_STEPS_DEFAULT = 500
"""Steps per fine-tuning job of the default run, in place of its former 30 s time budget: on 2
idle CPU cores (22 steps/s at batch 16) 500 steps take about 23 s; on a shared machine the 30 s
jobs reached 102-317 steps, and 500 take 45-90 s (README, "Budgets and reproducible runs")."""


class OnPolicyConfig(_Strict):
    """`training.kind: onpolicy` (on-policy distillation, GKD): the student samples, the
    teacher (a local `transformers` model sharing its tokenizer) scores every sampled token."""

    beta: float = Field(1.0, ge=0, le=1)
    """The generalised JSD's interpolation: 1 the reverse KL (student || teacher), 0 the
    forward KL, 0.5 the symmetric JSD."""
    lmbda: float = Field(1.0, ge=0, le=1)
    """Share of steps that sample from the student; the others train on the examples' own
    completions (off-policy)."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature, and the one the divergence compares the distributions at."""
    max_new_tokens: int = Field(64, ge=1)
    """Tokens a sampled completion may take."""
    keep_samples: int = Field(4, ge=0)
    """Sampled completions per step stored as turns (with the teacher's per-token scores)."""


class TrainingConfig(_Strict):
    every_rounds: int = Field(1, ge=1)
    min_new_examples: int = Field(1, ge=0)
    kind: str = "sft"
    """A registered trainer (`register_trainer`; checked when the config loads): sft: positives
    only; redi: positives plus the student's wrong attempts as negatives (REDI loss); dpo: TRL's
    DPO on (correct, wrong) pairs of the same prompt; a plugin's own trainer."""
    in_context: bool = False
    """Also train on each verified explanation as the completion of the re-attempt prompt the
    student saw (explanation + problem), so that it learns to read explanations in context.
    Measured on the learning bench (3 seeds): it cost standard distillation 5 points of held-out
    accuracy (0.16 -> 0.11) and did not make utility interventions pay (0.11 -> 0.08)."""
    filter: bool = False
    """Learnability filter: score each new teacher explanation chunk by chunk under the student;
    drop what it cannot follow (if the rest still verifies), else rewrite it with the student
    (`filter_rewrite`) or leave the explanation out."""
    filter_threshold: float = -2.5
    """Mean log-prob per token below which a chunk counts as unlearnable."""
    filter_rewrite: bool = False
    """Learnability filter: when a chunk cannot be dropped, let the student write the rest from
    the text before it (Reverse Speculative Decoding) and keep its version if it verifies, instead
    of leaving the explanation out. Measured on the bench's tiny student: few rewrites verify."""
    alpha: float = Field(0.8, ge=0)
    """redi: weight of the negative term."""
    beta: float = Field(0.1, gt=0)
    """dpo: how far the student may drift from the model it starts from."""
    lora: bool = False
    lora_r: int = Field(8, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    max_steps: int | None = Field(MAX_STEPS_DEFAULT, ge=1)
    """Optimiser steps of one fine-tuning job: with it the same seed and versions train the
    same model (None: only `max_seconds` bounds a job, and the steps depend on the machine)."""
    max_seconds: float = Field(600.0, gt=0)
    """Time limit of one fine-tuning job, a safety net far above what `max_steps` takes; a job
    that reaches it stops early (its metrics say `stopped_by_time`) and is no longer reproducible."""
    max_examples: int | None = Field(5000, ge=1)
    """Cap on examples per job (newest first, the rest sampled from earlier data)."""
    packing: bool = True
    """sft and trajectory SFT: train in a plain torch loop on packed batches (each step's
    examples laid end to end, no padding, no TRL); false: TRL's SFTTrainer on padded batches.
    Same loss and optimiser."""
    onpolicy: OnPolicyConfig = Field(default_factory=OnPolicyConfig)
    """`kind: onpolicy`'s settings."""


class BudgetConfig(_Strict):
    """Limits of one run, checked before each round starts; a run that has reached one stops
    as `budget_exhausted` and continues with `pedagogy run --resume RUN` and a higher limit.
    None = no limit."""

    teacher_tokens: int | None = Field(None, ge=1)
    """Prompt + completion tokens of the teacher's calls (explanations, refinements)."""
    cost_usd: float | None = Field(None, gt=0)
    """US dollars of every model call of the run (litellm's price list). Calls whose price is
    unknown are not counted: the run warns once and `pedagogy show` counts them."""
    wall_seconds: float | None = Field(None, gt=0)
    """Seconds the loop has run, resumes added up (time lost to a kill is not counted)."""


class RayConfig(_Strict):
    """Where a round's episodes run: in this process (no address), or on Ray actors that each
    hold a student replica (`pedagogy.graphs.rollouts_ray`; needs `pip install "pedagogy[ray]"`).
    Not part of what a run is: a resumed run takes these from the command, not from its record."""

    address: str | None = None
    """None: episodes run in this process. "local": start a Ray cluster on this machine (loopback
    only, no dashboard); "auto": join the cluster this machine is part of; "ray://HOST:PORT": a
    remote cluster's client address (its workers must see the run's models folder)."""
    actors: int = Field(2, ge=1)
    """Rollout actors, each with its own student replica, started once per run."""
    cpus_per_actor: float = Field(1.0, gt=0)
    """CPUs Ray reserves for each actor (its torch threads)."""
    num_cpus: int | None = Field(None, ge=1)
    """"local" only: CPUs of the cluster it starts; None: actors x cpus_per_actor."""


class EvaluationConfig(_Strict):
    heldout_per_arm: int = Field(100, ge=1)
    """Held-out problems per arm; a small level gives fewer, and never the problems it is
    practised on (a level with no more distinct problems than this is warned about)."""
    max_tokens: int | None = Field(None, ge=1)
    """Tokens a held-out answer may take; None: the student's `max_tokens`, what it practises
    with, so an answer cut off in practice is cut off (and counted wrong) here too."""
    seed: int = 1_000_003
    """Seed of the fixed held-out set (distinct from the run seed)."""
    patience: int | None = Field(2, ge=1)
    """Stop the run early once this many rounds in a row did not raise the held-out mean by more
    than `min_delta` over the best before them (a decision of kind "stop" records it); None:
    always run every round."""
    min_delta: float = Field(0.01, ge=0)
    """The least gain of the held-out mean that counts as an improvement for `patience`."""
    tolerance: float = Field(0.0, ge=0, le=1)
    """Promote a candidate whose mean held-out accuracy is at least the current one minus this."""


DEFAULT_CHAIN_SUM_LEVELS: list[dict[str, int]] = [
    {"num_terms": 0, "num_digits": 0},  # a±b, 1 digit                 -> 1.00 by round 5
    {"num_terms": 1, "num_digits": 0},  # 2-3 terms, 1 digit           -> .90+ by round 7
    {"num_terms": 2, "num_digits": 0},  # 2-4 terms, 1 digit           -> .82-.96 by round 7-8
    {"num_terms": 0, "num_digits": 1},  # a±b, 1-2 digits              -> .6-.75: within reach
    {"num_terms": 2, "num_digits": 2},  # 2-4 terms, 1-3 digits        -> .3-.4: out of reach
]
"""chain_sum levels for the default run (curriculum attribute levels, inclusive ranges).

Chosen with `python -m pedagogy.benchmarks.learning_curve`: three levels the tiny student learns
within the default run, one it half-learns, one out of its reach, so a curriculum has something
to choose. All short sequences: longer chains (5 terms, 4 digits) make every step slower.
"""


def _default_domain() -> dict[str, Any]:
    """The embedded default's domain options: reasoning-gym chain_sum in five levels."""
    return {
        "skills": ["chain_sum"],
        "compact": True,
        "levels": {"chain_sum": [dict(level) for level in DEFAULT_CHAIN_SUM_LEVELS]},
    }


class RunConfig(_Strict):
    """Everything a run needs. Stored with the run so `--resume` rebuilds the same agents."""

    name: str = "default"
    seed: int = 0
    plugins: list[str] = Field(default_factory=list)
    """Modules to import before the config's names are looked up: each registers custom parts
    (domains, graphs, tools, ...; see `pedagogy.plugins`). A run records here every plugin it
    used, so `show`, `replay`, `export` and `audit` import them again."""
    rounds: int = Field(8, ge=1)
    db: str | None = None
    """SQLAlchemy URL or file path; default: <workdir>/pedagogy.db"""
    workdir: str = "pedagogy-runs"
    """Where the database (by default), model versions, checkpoints and plots go."""
    domain: DomainConfig = Field(default_factory=lambda: DomainConfig(options=_default_domain()))
    teacher: BackendConfig = Field(default_factory=lambda: BackendConfig(max_tokens=256))
    student: BackendConfig = Field(
        default_factory=lambda: BackendConfig(
            kind="transformers",
            model="tiny",
            max_tokens=64,
            options={"max_batch_size": 512, "tiny": {}},
        )
    )
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    verifier: VerifierConfig = Field(default_factory=VerifierConfig)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    episodes: EpisodesConfig = Field(default_factory=EpisodesConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    def db_url(self) -> str:
        return self.db or str(Path(self.workdir) / "pedagogy.db")

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A validated copy with nested overrides merged in, e.g. {"training": {"max_seconds": 5}}."""
        return config_from_dict(_merge(self.model_dump(), overrides), "overrides")


def _format_validation(err: ValidationError, source: str) -> str:
    """Every problem of a config, one line each (a user fixes them all in one pass)."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check the spelling against `pedagogy init`"
        lines.append(f"{source}: {where}: {msg}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems in {source}:\n" + "\n".join(f"  {line}" for line in lines)


def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None
    from pedagogy.plugins import load_entry_points, load_plugins

    load_entry_points()
    load_plugins(config.plugins, source)  # before the options of their parts are checked
    from pedagogy.options import config_option_problems  # imports the kinds' modules
    from pedagogy.part_names import config_name_problems, tool_serving_problems

    # The names first: a part no registry knows has no options to check; then whether the
    # domain, built from its options, can serve the tools.
    lines = (
        config_name_problems(config)
        or config_option_problems(config)
        or tool_serving_problems(config)
    )
    problems = [f"{source}: {line}" for line in lines]
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(
            f"{len(problems)} problems in {source}:\n" + "\n".join(f"  {p}" for p in problems)
        )
    return config


def load_config(path: str | Path | None) -> RunConfig:
    """The default config, or the file at `path` layered over it."""
    base = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    if path is None:
        return config_from_dict(base, str(DEFAULT_CONFIG_PATH))
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; create one with `pedagogy init`")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{p}:{where}: not valid YAML ({getattr(err, 'problem', err)}); fix the syntax"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return config_from_dict(_merge(base, data), str(p))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "options":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
