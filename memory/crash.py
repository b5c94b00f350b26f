"""A test hook: die at a named point as a SIGKILL would, to test what a resume finds there.

With ``PEDAGOGY_CRASH_AFTER=<point>:<n>`` set, the process exits at once with status 137
(`os._exit`: no cleanup, no flush, no lease released, like SIGKILL) the n-th time it passes
`<point>` (n = 1 when left out). The points:

- each loop node, after its SQL writes and before LangGraph checkpoints its update:
  ``evaluate_base``, ``plan_round``, ``run_episodes``, ``update_curriculum``,
  ``train_generator``, ``train``, ``evaluate_and_promote``;
- ``migration``: inside migration 0008, after its changes and before they are committed.

Never set it outside tests. Tests that run the loop in their own process replace `action`
(e.g. with a function that raises a BaseException) instead of exiting.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

ENV = "PEDAGOGY_CRASH_AFTER"
passed: Counter[str] = Counter()
"""How often this process passed each point (while the hook is set)."""


def _exit() -> None:
    os._exit(137)


action: Callable[[], None] = _exit
"""What happens at the chosen point: `os._exit(137)`."""


def crash_point(name: str) -> None:
    """Die here if PEDAGOGY_CRASH_AFTER names this point and this pass."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    passed[name] += 1
    if passed[name] == int(nth or 1):
        action()
