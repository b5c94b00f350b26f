"""The order of a run's hash chain does not depend on timing.

A round's episodes run concurrently and finish in whatever order the machine gives; which row takes
which chain index must not follow it: two runs of one config and seed write the same chain (the
same rows at the same indices, but for fresh ids and timings). Fast part: the write batches of a
round against every finishing order. Slow part: two whole runs whose episodes are delayed at
random, differently in each, compared link by link.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
from typing import Any

import pytest

from pedagogy.graphs import practice
from pedagogy.graphs.practice import _PlanBatches
from pedagogy.memory import SQLStore, open_store
from pedagogy.memory.records import EpisodeRecord
from tests.test_idempotent import _config_file, _run


def _episode(index: int) -> EpisodeRecord:
    return EpisodeRecord(f"e{index}", "run", 1, index, "p", "arm", None, "wrong")


def _written(order: list[int], size: int, decided_after: int | None) -> list[list[int]]:
    """The batches a round writes when its episodes finish in `order` and its decisions are
    stored after the first `decided_after` of them (None: no decision comes)."""
    batches = _PlanBatches(sorted(order), size, decided=False)
    written: list[list[int]] = []
    for n, index in enumerate(order):
        if n == decided_after:
            batches.decided = True
        batches.add(_episode(index))
        written += [[e.index for e in batch] for batch in batches.take()]
    written += [[e.index for e in batch] for batch in batches.take(final=True)]
    return written


@pytest.mark.parametrize("size", [1, 3, 4, 20])
def test_a_round_is_written_in_plan_order_batches_whatever_order_its_episodes_finish(size: int):
    plan = [0, 2, 3, 5, 6, 7, 8, 11, 12, 13]  # a resumed round: some indices already written
    expected = [plan[i : i + size] for i in range(0, len(plan), size)]
    rng = random.Random(0)
    for _ in range(200):
        order = rng.sample(plan, len(plan))
        decided = rng.choice([None, *range(len(plan))])
        assert _written(order, size, decided) == expected


def test_nothing_is_written_before_the_decisions_but_after_them_as_soon_as_a_batch_is_whole():
    batches = _PlanBatches([0, 1, 2, 3], 2, decided=False)
    batches.add(_episode(1))
    batches.add(_episode(0))
    assert batches.take() == []  # whole, but the round's decisions are not stored yet
    batches.decided = True
    assert [[e.index for e in b] for b in batches.take()] == [[0, 1]]
    batches.add(_episode(3))
    assert batches.take() == []  # waits for episode 2
    batches.add(_episode(2))
    assert [[e.index for e in b] for b in batches.take()] == [[2, 3]]
    assert batches.take(final=True) == []


# --- whole runs ----------------------------------------------------------------------------------

_ID = re.compile(r"\b[0-9a-f]{32}\b")
"""A uuid4 hex (turns, tool calls, jobs) or an episode id (a hash of the run id)."""
_TIMING = ("latency_s", "seconds")


def _links(store: SQLStore, run_id: str, folder: Path) -> list[tuple[str, int, Any]]:
    """The run's chain as (table, chain index, content): every column but the hash, with the run
    id, the run's folder and every fresh id replaced by stable names (an id by the order of its
    first appearance in the chain), and times and durations left out (the columns ending in
    _at, and latency_s; a training job's seconds)."""
    names: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        return names.setdefault(match.group(0), f"<id{len(names)}>")

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: plain(v)
                for k, v in value.items()
                if k != "hash" and k not in _TIMING and not k.endswith("_at")
            }
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str):
            return _ID.sub(name, value.replace(str(folder), "DIR").replace(run_id, "RUN"))
        return value

    return [
        (link.table, link.chain_index, plain({"id": link.id, **link.row}))
        for link in store.chain_links(run_id)
    ]


def _jittered(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Delay each episode at random before and after it runs: they finish in another order."""
    rng = random.Random(seed)
    invoke = practice.invoke

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(rng.random() * 0.02)
        out = await invoke(*args, **kwargs)
        await asyncio.sleep(rng.random() * 0.02)
        return out

    monkeypatch.setattr(practice, "invoke", slow)


@pytest.mark.slow
def test_two_runs_of_one_config_and_seed_write_the_same_chain(tmp_path, monkeypatch):
    chains = []
    for n in range(2):
        _jittered(monkeypatch, seed=n)
        folder = tmp_path / f"run{n}"
        folder.mkdir()
        result = _run(_config_file(folder, "same"))
        assert result.status == "completed"
        with open_store(result.db_url) as store:
            assert store.verify_chain(result.run_id) == []
            chains.append(_links(store, result.run_id, folder))
    first, second = chains
    tables = {table for table, _, _ in first}
    assert {"turns", "verdicts", "decisions", "snapshots", "dataset_items"} <= tables
    assert [link[:2] for link in first] == [link[:2] for link in second]
    for a, b in zip(first, second, strict=True):
        assert a == b
