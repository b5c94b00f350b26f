"""The viewer part of `pedagogy bench throughput`: how long the episodes page takes to answer
over a run of 100k stored episodes (a synthetic run of the default domain in a temporary SQLite
file), through the viewer's ASGI app in this process (the HTTP request as the browser sends it,
routing, the keyset query, the template): the first page, a page deep into the run, and a
filtered one, each the median of 5 requests after one untimed request."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["episodes_page"]


def episodes_page(
    episodes: int = 100_000, per_round: int = 10_000, repeats: int = 5
) -> dict[str, Any]:
    """Milliseconds each episodes page takes (min, median, max over `repeats`)."""
    from fastapi.testclient import TestClient

    from pedagogy.graphs.replay_bench import synthetic_run
    from pedagogy.memory.store import open_store
    from pedagogy.viewer.app import create_app

    with tempfile.TemporaryDirectory(prefix="pedagogy-viewer-") as tmp:
        db = str(Path(tmp) / "viewer.db")
        store = open_store(db)
        try:
            run_id = synthetic_run(store, episodes=episodes, per_round=per_round)
        finally:
            store.close()
        rounds = -(-episodes // per_round)
        paths = {
            "first page": f"/runs/{run_id}/episodes",
            f"deep (round {rounds}, after index {per_round // 2})": (
                f"/runs/{run_id}/episodes?after={rounds}.{per_round // 2}"
            ),
            "filtered (wrong, explained)": f"/runs/{run_id}/episodes?outcome=wrong&explained=yes",
        }
        out: dict[str, Any] = {"episodes": episodes, "pages": {}}
        with TestClient(create_app(db)) as client:
            for name, path in paths.items():
                answer = client.get(path)  # untimed: connections, template compiled
                if answer.status_code != 200:
                    raise RuntimeError(f"{path} answered {answer.status_code}")
                ms = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    client.get(path)
                    ms.append(1000 * (time.perf_counter() - t0))
                out["pages"][name] = {
                    "min": min(ms),
                    "median": statistics.median(ms),
                    "max": max(ms),
                }
    out["worst_median_ms"] = max(p["median"] for p in out["pages"].values())
    return out
