"""Which library versions a run ran with, so a stored result says what produced it.

What a tiny model learns in a fixed number of steps changes when transformers, TRL or torch
release, so every start and resume of a run appends the versions it used to the run folder's
`environment.json` (a list: one entry per process that worked on the run).
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "pedagogy",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "trl",
    "peft",
    "datasets",
    "langgraph",
    "litellm",
    "sqlalchemy",
    "alembic",
    "networkx",
    "pydantic",
    "reasoning-gym",
    "bm25s",
    "vllm",
)
"""The packages whose versions change what a run computes (absent ones are recorded as None)."""

FILENAME = "environment.json"


def library_versions() -> dict[str, str | None]:
    """The installed version of each of `PACKAGES`, None where it is not installed."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict[str, Any]:
    """Python, platform and library versions of this process."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": library_versions(),
    }


def record_environment(run_dir: Path, *, resumed: bool) -> dict[str, Any]:
    """Append this process's environment to `run_dir/environment.json`; return the entry."""
    path = Path(run_dir) / FILENAME
    entries: list[dict[str, Any]] = []
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
            entries = loaded if isinstance(loaded, list) else [loaded]
        except json.JSONDecodeError:
            entries = []  # a torn write from a killed process: start the list again
    entry = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed": resumed,
        **environment(),
    }
    entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(entries, indent=2) + "\n")
    tmp.replace(path)
    return entry


def read_environment(run_dir: Path) -> list[dict[str, Any]]:
    """The entries recorded for a run folder; [] when none were."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        return []
    try:
        loaded = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    return loaded if isinstance(loaded, list) else [loaded]
