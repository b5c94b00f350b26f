"""The embedded default loop from Python: teach, then read back what happened.

python examples/quickstart.py            # the full default (a few minutes)
python examples/quickstart.py --quick    # 2 small rounds (CI)
"""

import asyncio
import sys

from pedagogy.config import load_config
from pedagogy.memory.store import open_store
from pedagogy.report import run_summary
from pedagogy.runner import run_loop

QUICK = {
    "rounds": 2,
    "episodes": {"per_round": 32},
    "training": {"max_seconds": 3},
    "evaluation": {"heldout_per_arm": 16},
}

if __name__ == "__main__":
    config = load_config(None)
    if "--quick" in sys.argv:
        config = config.with_overrides({**QUICK, "workdir": "pedagogy-runs/quickstart"})
    result = asyncio.run(run_loop(config))
    summary = run_summary(open_store(result.db_url), result.run_id)
    print(f"run {result.run_id}: {result.status} in {result.seconds:.0f}s")
    for arm, acc in summary["heldout_final"].items():
        print(f"  {arm:<14} {summary['heldout_initial'].get(arm, 0):.2f} -> {acc:.2f}")
