"""The store part of `pedagogy bench throughput` measures both sides on the same rows."""

from __future__ import annotations

import pytest

from pedagogy.benchmarks.throughput import rows, store_ratio


@pytest.mark.slow
def test_store_part_reports_both_sides_and_its_targets():
    report = store_ratio(per_round=20, rounds=2)
    assert report["episodes"] == 40 and report["turns"] >= 40
    for side in ("store", "core"):
        assert report[side]["cpu_s"] > 0 and report[side]["per_cpu_s"] > 0
    assert report["ratio"] > 0 and report["ratio_total"] > 0
    ((what, ours, base, ratio, target, met),) = rows({"store": report})
    assert what.startswith("store turns per CPU-s") and target == ">= 0.90, >= 20000/s"
    assert ratio == f"{report['ratio']:.2f}" and met in ("met", "NOT met")
