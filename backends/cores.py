"""How many CPU cores are free now, so torch never runs more threads than there are cores to run
them: on a machine shared with other work, two threads on two busy cores generate several times
slower than one (each waits for the other at every operation) while burning more CPU."""

from __future__ import annotations

import os
import time

__all__ = ["free_cores", "usable_cores"]

_cache: tuple[float, int] | None = None
_CACHE_S = 30.0


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not all the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _busy_idle() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, idle


def free_cores(window_s: float = 0.2) -> int:
    """Usable cores minus what other processes keep busy, measured over `window_s` while this
    process waits (so its own work is not counted); at least 1. Where /proc/stat is missing
    (not Linux), the 1-minute load average stands in. The answer is kept for 30 s."""
    global _cache
    now = time.monotonic()
    if _cache is not None and now - _cache[0] < _CACHE_S:
        return _cache[1]
    cores = usable_cores()
    machine = os.cpu_count() or cores
    first = _busy_idle()
    if first is not None:
        time.sleep(window_s)
        second = _busy_idle()
    if first is not None and second is not None:
        busy, idle = second[0] - first[0], second[1] - first[1]
        total = busy + idle
        busy_cores = machine * busy / total if total > 0 else 0.0
    else:
        try:
            busy_cores = os.getloadavg()[0]
        except OSError:
            busy_cores = 0.0
    free = max(1, min(cores, int(machine - busy_cores + 0.5)))
    _cache = (now, free)
    return free
