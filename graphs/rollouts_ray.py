"""A round's episodes on Ray actors: each actor holds a replica of the student, started once per
run, and runs its share of the round's episodes; the records come back to the driver, which
writes them as it always does (keyed by run, round and index). Held-out evaluation is shared out
the same way (`evaluate`): each actor measures its share of the held-out problems with the
student version the driver holds, problem i with seed i as in one process, and the driver counts
the results per arm and records them.

What an actor needs is rebuilt from the run's config and the student's current model path: the
domain, the backends and the agents (through the `build_agents` the front door gives, so that
a remote episode is built exactly as a local one); nothing of the driver's session is pickled.
When the student is promoted, each actor loads the new version before its next round.

A round's intervention decisions stay on the driver: the round's policy must see every wrong
first attempt together (`graphs.broker`). So a round has two phases per actor: the actor runs
its episodes until each has finished or handed in a wrong attempt (`settled`), the driver's
broker decides them all in one call, and the actor finishes its episodes with the decisions
(`resolve`, `results`). Episodes are split across actors by index, run with their own seeds and
the same per-round teacher settings, so a run gives the same records with or without Ray.

An actor that dies mid-round (its process killed, its node lost) is replaced, and its share of
the round runs again on the new one; after the decisions it runs with the decisions already
made, so every planned episode is recorded exactly once and no decision is asked twice.

Each actor's backends keep their own circuit breakers (a dead API endpoint is skipped on every
actor after its own `breaker_threshold` failures). After an actor's share of a round, its
breakers' changes come back to the driver (`take_circuit_events`), which stores them as the
round's `circuit` decisions like its own, with the actor's number in their detail; the changes
of an actor that died with them are lost with it (its turns were never recorded either).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pedagogy.errors import ConfigError, PedagogyError

if TYPE_CHECKING:
    from pedagogy.config import RayConfig, RunConfig
    from pedagogy.graphs.session import Session
    from pedagogy.memory.records import EpisodeRecord

__all__ = ["RayRollouts", "RolloutWorker", "require_ray"]

INSTALL = 'pip install "pedagogy[ray]"'
RETRIES = 2
"""Times one actor's share of a round is run again on a fresh actor after its actor died."""


def require_ray(address: str) -> None:
    """Refuse, in one line, a Ray address when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            f"ray.address {address!r} needs Ray, which is not installed; {INSTALL}, or run "
            "without --ray (episodes then run in this process)"
        )


@dataclass(frozen=True)
class Recipe:
    """What an actor builds its agents from (pickled to it; the callables by reference)."""

    config: dict[str, Any]
    """The run's config, `RunConfig.model_dump()`."""
    build_agents: Callable[..., tuple[Any, Callable[[Any], Any]]]
    """`pedagogy.assembly.build_agents`: (config, domain, student, teacher, judge, graph)."""
    graph_factory: Callable[[Any], Any]
    """The run's episode graph factory (the session's)."""


@dataclass(frozen=True)
class RoundContext:
    """What an actor sets before a round, the same as the driver sets on its own agents."""

    run_id: str
    round: int
    student_path: str | None
    student_version: str | None
    spent: int
    """Explanations the teacher already gave in this round (a resumed round)."""
    style_for: Any
    mistakes_for: Any


class _BrokerProxy:
    """Stands in for the driver's `InterventionBroker` inside an actor: collects the wrong first
    attempts of the actor's episodes and waits for the driver's decisions."""

    def __init__(self, expected: set[str], decided: dict[str, bool]):
        self.expected, self.decided = expected, decided
        self.candidates: list[tuple[str, int, Any, str]] = []
        self.finished: list[str] = []
        self._settled: set[str] = set()
        self._futures: dict[str, asyncio.Future[bool]] = {}
        self.all_settled = asyncio.Event()
        self._check()

    async def decide(self, episode: str, index: int, problem: Any, attempt: str) -> bool:
        if episode in self.decided:  # a rerun after the decisions: the one already made
            return self.decided[episode]
        future = asyncio.get_running_loop().create_future()
        self._futures[episode] = future
        self.candidates.append((episode, index, problem, attempt))
        self._settle(episode)
        return await future

    async def finished_episode(self, episode: str) -> None:
        if episode not in self._futures:
            self.finished.append(episode)
        self._settle(episode)

    def resolve(self, decisions: dict[str, bool]) -> None:
        for episode, future in self._futures.items():
            if not future.done():
                future.set_result(decisions[episode])

    def fail(self, message: str) -> None:
        for future in self._futures.values():
            if not future.done():
                future.set_exception(PedagogyError(message))

    def _settle(self, episode: str) -> None:
        self._settled.add(episode)
        self._check()

    def _check(self) -> None:
        if self.expected <= self._settled:
            self.all_settled.set()


class RolloutWorker:
    """A Ray actor's body: a student replica and the agents around it, for the whole run."""

    def __init__(self, recipe: Recipe, student_path: str | None, student_version: str | None):
        from pedagogy.backends.registry import build_backend
        from pedagogy.config import config_from_dict
        from pedagogy.graphs.parts import build_domain_from
        from pedagogy.plugins import load_plugins

        config = config_from_dict(recipe.config, "the run's config (on a Ray actor)")
        load_plugins(config.plugins, "the run's config")
        self.domain = domain = build_domain_from(config)
        options = {k: v for k, v in config.student.options.items() if k != "tiny"}
        update: dict[str, Any] = {"options": options}
        if student_path is not None:
            update["model"] = student_path
        self.student = build_backend(config.student.model_copy(update=update), domain)
        if hasattr(self.student, "version_id"):
            self.student.version_id = student_version
        teacher = build_backend(config.teacher, domain)
        judge = (
            build_backend(config.verifier.backend, domain)
            if config.verifier.kind == "llm_judge"
            else None
        )
        self.agents, self.graph_factory = recipe.build_agents(
            config, domain, self.student, teacher, judge, recipe.graph_factory
        )
        graph = self.graph_factory(self.agents)
        if getattr(graph, "checkpointer", False) is not False and hasattr(graph, "copy"):
            graph = graph.copy({"checkpointer": False})  # as `Session`: episodes never checkpoint
        self.graph = graph
        self._proxy: _BrokerProxy | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    def pid(self) -> int:
        return os.getpid()

    async def start(
        self,
        ctx: RoundContext,
        items: list[dict[str, Any]],
        decided: dict[str, bool] | None = None,
    ) -> None:
        """Start a round's share of episodes (`items`: the episode graph's inputs)."""
        from pedagogy.graphs.replay_drive import invoke

        self._load(ctx.student_path, ctx.student_version)
        teacher = self.agents.teacher
        teacher.new_round(ctx.spent)
        teacher.style_for, teacher.mistakes_for = ctx.style_for, ctx.mistakes_for
        proxy = _BrokerProxy({i["episode_id"] for i in items}, dict(decided or {}))
        self._proxy = self.agents.broker = proxy

        async def one(item: dict[str, Any]) -> EpisodeRecord:
            try:
                out = await invoke(self.graph, self.graph_factory, self.agents, item)
            finally:
                await proxy.finished_episode(item["episode_id"])
            return out["record"]

        self._tasks = [asyncio.ensure_future(one(item)) for item in items]

    def _load(self, path: str | None, version: str | None) -> None:
        """Serve the student version the driver has (a promoted one, or a candidate)."""
        if path is not None and version != getattr(self.student, "version_id", None):
            self.student.reload(path, version)

    async def evaluate(
        self,
        path: str | None,
        version: str | None,
        items: list[tuple[int, Any]],
        max_tokens: int,
        acting: bool,
    ) -> list[Any]:
        """This actor's share of the held-out set, `items` as (index, problem): per problem,
        whether its answer verifies, or for an acting student its trajectory's
        `AgentProblemResult` (run with the problem's index as its seed, as in one process)."""
        from pedagogy.training.evaluate import evaluate_agent_problems, evaluate_problems

        self._load(path, version)
        problems = [p for _, p in items]
        if acting:
            actor = getattr(self.agents, "eval_actor", None) or self.agents.actor
            seeds = [i for i, _ in items]
            return list(await evaluate_agent_problems(actor, self.domain, problems, seeds))
        return await evaluate_problems(self.student, self.domain, problems, max_tokens)

    async def settled(self) -> tuple[list[tuple[str, int, Any, str]], list[str]]:
        """Once each episode finished or handed in a wrong attempt: (the wrong attempts as
        (episode, index, problem, attempt), the episodes that finished without one)."""
        proxy = self._proxy
        if proxy is None:
            raise PedagogyError("RolloutWorker.settled called before start")
        # Each episode settles when it hands in a wrong attempt or ends (an error included: its
        # error comes back from `results`).
        await proxy.all_settled.wait()
        return list(proxy.candidates), list(proxy.finished)

    def take_circuit_events(self) -> list[tuple[str, Any]]:
        """(role, `CircuitEvent`) for each change of this actor's breakers since last asked."""
        from pedagogy.backends.base import HasCircuitBreaker

        events: list[tuple[str, Any]] = []
        seen: set[int] = set()
        for role in ("teacher", "student", "verifier"):
            backend = getattr(getattr(self.agents, role, None), "backend", None)
            if isinstance(backend, HasCircuitBreaker) and id(backend) not in seen:
                seen.add(id(backend))
                events.extend((role, event) for event in backend.breaker.take_events())
        return events

    def resolve(self, decisions: dict[str, bool]) -> None:
        """The driver's decisions on this actor's wrong attempts."""
        if self._proxy is not None:
            self._proxy.resolve(decisions)

    async def results(self) -> list[EpisodeRecord]:
        """The round's records of this actor's share; the first episode error is raised."""
        try:
            return list(await asyncio.gather(*self._tasks))
        except BaseException:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            raise
        finally:
            self._tasks, self._proxy, self.agents.broker = [], None, None

    async def close(self) -> None:
        aclose = getattr(self.student, "aclose", None)
        if aclose is not None:
            await aclose()


class RayRollouts:
    """The driver's side: the run's actors, started on first use, and a round's dispatch."""

    def __init__(
        self,
        settings: RayConfig,
        build_agents: Callable[..., tuple[Any, Callable[[Any], Any]]],
        graph_factory: Callable[[Any], Any],
    ):
        """Checks that Ray is installed; starts nothing (the first round does)."""
        if settings.address is None:
            raise ConfigError("RayRollouts needs ray.address; leave it out to run locally")
        require_ray(settings.address)
        self.settings = settings
        self.build_agents, self.graph_factory = build_agents, graph_factory
        self.recipe: Recipe | None = None
        self.actors: list[Any] = []
        self.restarts = 0
        """Actors replaced after one died (all rounds)."""
        self._circuit: list[tuple[int, str, Any]] = []
        self._started_ray = False
        self._worker_cls: Any = None

    # -- the cluster and the actors -------------------------------------------------------------

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():  # a caller's own cluster: use it, leave it running
            return
        s = self.settings
        common = dict(log_to_driver=False, logging_level="warning", namespace="pedagogy")
        if s.address == "local":
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            # Ray runs its workers at nice 15 by default; here the actors are the round's work,
            # and at that priority a busy machine starved them (a round several times slower).
            os.environ.setdefault("RAY_worker_niceness", "0")
            cpus = s.num_cpus or max(1, int(round(s.actors * s.cpus_per_actor)))
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                **common,
            )
        else:
            try:
                ray.init(address=s.address, **common)
            except (ConnectionError, RuntimeError, ValueError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err)
                raise ConfigError(
                    f"cannot join the Ray cluster at ray.address {s.address!r}: {first}; start "
                    "one (`ray start --head`), give its address, or use --ray local"
                ) from None
        self._started_ray = True

    def _new_actor(self, path: str | None, version: str | None) -> Any:
        import ray

        if self._worker_cls is None:
            self._worker_cls = ray.remote(num_cpus=self.settings.cpus_per_actor)(RolloutWorker)
        return self._worker_cls.remote(self.recipe, path, version)

    def start(self, config: RunConfig, path: str | None, version: str | None) -> None:
        """Connect and start the actors for the run of `config` (once per run; later calls do
        nothing)."""
        if self.actors:
            return
        self.recipe = Recipe(config.model_dump(), self.build_agents, self.graph_factory)
        self._connect()
        self.actors = [self._new_actor(path, version) for _ in range(self.settings.actors)]

    def close(self) -> None:
        """Stop the actors, and the local cluster this run started."""
        if not self.actors and not self._started_ray:
            return
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def take_circuit_events(self) -> list[tuple[int, str, Any]]:
        """(actor number, role, `CircuitEvent`) for each change of the actors' breakers since
        last asked, in the order they happened."""
        events, self._circuit = self._circuit, []
        return sorted(events, key=lambda e: (e[2].at, e[0]))

    # -- a round ------------------------------------------------------------------------------

    async def run_round(
        self,
        session: Session,
        round_: int,
        items: list[dict[str, Any]],
        spent: int,
        broker: Any,
    ) -> AsyncIterator[EpisodeRecord]:
        """Run `items` (the episode graph's inputs) on the actors; yield each actor's records
        as its share finishes. `broker` is the round's `InterventionBroker`."""
        student = session.student_backend
        path = getattr(student, "model", None)
        version = getattr(student, "version_id", None)
        self.start(session.config, path, version)
        teacher = session.agents.teacher
        ctx = RoundContext(
            session.run_id, round_, path, version, spent, teacher.style_for, teacher.mistakes_for
        )
        n = len(self.actors)
        shares = [(k, items[k::n]) for k in range(n) if items[k::n]]
        runs = [asyncio.ensure_future(self._share(k, share, ctx, broker)) for k, share in shares]
        try:
            for fut in asyncio.as_completed(runs):
                for record in await fut:
                    yield record
        finally:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)

    async def evaluate(
        self, session: Session, heldout: dict[Any, list[Any]], max_tokens: int, acting: bool
    ) -> list[Any]:
        """The held-out set shared out to the actors by index, each serving the student version
        the driver holds: per problem of `training.evaluate.flatten(heldout)`, in its order,
        what `evaluate_problems` (or for an acting student `evaluate_agent_problems`) gives."""
        from pedagogy.training.evaluate import flatten

        student = session.student_backend
        path = getattr(student, "model", None)
        version = getattr(student, "version_id", None)
        self.start(session.config, path, version)
        flat = flatten(heldout)
        n = len(self.actors)
        shares = [
            (k, [(i, flat[i][1]) for i in range(k, len(flat), n)])
            for k in range(n)
            if k < len(flat)
        ]

        async def share(k: int, items: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
            for attempt in range(RETRIES + 1):
                try:
                    out = await self.actors[k].evaluate.remote(
                        path, version, items, max_tokens, acting
                    )
                    return [(i, r) for (i, _), r in zip(items, out, strict=True)]
                except BaseException as err:
                    if not _actor_died(err) or attempt == RETRIES:
                        raise _cause(err) from None
                    self.restarts += 1
                    self.actors[k] = self._new_actor(path, version)
            raise PedagogyError("unreachable")  # the loop returns or raises

        results: list[Any] = [None] * len(flat)
        for part in await asyncio.gather(*(share(k, items) for k, items in shares)):
            for i, r in part:
                results[i] = r
        return results

    async def _share(
        self, k: int, items: list[dict[str, Any]], ctx: RoundContext, broker: Any
    ) -> list[EpisodeRecord]:
        """One actor's share: run to settled, hand the wrong attempts to the broker, finish
        with its decisions; an actor that dies is replaced and the share run again."""
        decided: dict[str, bool] | None = None
        for attempt in range(RETRIES + 1):
            actor = self.actors[k]
            try:
                await actor.start.remote(ctx, items, decided)
                if decided is None:
                    candidates, finished = await actor.settled.remote()
                    for episode in finished:
                        await broker.finished(episode)
                    asks = [broker.decide(e, i, p, a) for e, i, p, a in candidates]
                    answers = await asyncio.gather(*asks)
                    decided = {c[0]: answer for c, answer in zip(candidates, answers)}
                    await actor.resolve.remote(decided)
                records = await actor.results.remote()
                self._circuit.extend(
                    (k, role, event) for role, event in await actor.take_circuit_events.remote()
                )
                return records
            except BaseException as err:
                if not _actor_died(err) or attempt == RETRIES:
                    raise _cause(err) from None
                self.restarts += 1
                self.actors[k] = self._new_actor(ctx.student_path, ctx.student_version)
        raise PedagogyError("unreachable")  # the loop returns or raises


def _actor_died(err: BaseException) -> bool:
    try:
        from ray.exceptions import RayActorError
    except ImportError:
        return False
    return isinstance(err, RayActorError)


def _cause(err: BaseException) -> BaseException:
    """An episode's own error rather than Ray's wrapper of it."""
    try:
        from ray.exceptions import RayTaskError
    except ImportError:
        return err
    if isinstance(err, RayTaskError):
        cause = err.cause if getattr(err, "cause", None) is not None else None
        if isinstance(cause, BaseException):
            return cause
    return err
