"""Moved to `pedagogy.benchmarks.learning_curve`: run `python -m pedagogy.benchmarks.learning_curve`
with the same flags. The benchmarks live with the front door, which `pedagogy.training` never
imports, so this module only says where the bench went; it is removed in the next release."""

from __future__ import annotations

import sys
import warnings

MOVED = (
    "pedagogy.training.bench_learning_curve moved to pedagogy.benchmarks.learning_curve; "
    "run `python -m pedagogy.benchmarks.learning_curve` with the same flags"
)

warnings.warn(MOVED, DeprecationWarning, stacklevel=2)


def main(argv: list[str] | None = None) -> None:
    """Exit 2 with one line naming the new command."""
    print(f"error: {MOVED}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
