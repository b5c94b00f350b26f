"""`pedagogy bench throughput`: every part runs side by side with its baseline and reports."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app

pytestmark = pytest.mark.slow


def test_quick_throughput_reports_each_part_with_its_baseline():
    result = CliRunner().invoke(
        app, ["bench", "throughput", "--quick", "--parts", "training,decoding,growth", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["environment"]["cores"] >= 1 and report["environment"]["versions"]["torch"]
    training = report["training"]
    assert training["packed"]["steps_per_cpu_s"] > 0 and training["trl"]["steps_per_cpu_s"] > 0
    assert training["padding_packed"] < training["padding_padded"]  # packing removes padding
    decoding = report["decoding"]
    assert decoding["identical_to_generate"] == 1.0  # the same tokens as generate
    growth = report["growth"]
    assert growth["large"]["episodes"] > growth["small"]["episodes"]
    assert growth["ratio"] > 0 and growth["full_read_ratio"] > 0


def test_throughput_table_and_a_bad_part():
    from pedagogy.benchmarks.throughput import rows

    report = {
        "growth": {
            "small": {"episodes": 1000, "round_cpu_s": 0.1, "full_read_cpu_s": 0.4},
            "large": {"episodes": 100000, "round_cpu_s": 0.11, "full_read_cpu_s": 40.0},
            "ratio": 1.1,
            "full_read_ratio": 100.0,
        }
    }
    (first, second) = rows(report)
    assert first[3] == "1.10" and first[4] == "<= 1.2" and first[5] == "met"
    assert second[3] == "100.00" and second[5] == "-"
    bad = CliRunner().invoke(app, ["bench", "throughput", "--parts", "speed"])
    assert bad.exit_code == 2 and "unknown part(s) ['speed']" in bad.output


def test_agent_loop_part_times_both_sides_on_the_same_steps():
    from pedagogy.benchmarks.throughput import agent_loop_ratio, rows

    report = agent_loop_ratio(episodes=8, train_steps=10)
    assert report["episodes"] == 8 and report["steps"] >= 8  # each attempt takes a step at least
    assert report["batches"]["calls"] >= 1
    assert report["batches"]["mean_rows"] * report["batches"]["calls"] == report["steps"]
    assert 1 <= report["episodes_did"]["student_steps"] <= 2 * 6  # attempt + re-attempt, max_steps
    for side in ("loop", "bucketed", "one_batch"):
        assert report[side]["cpu_s"] > 0 and report[side]["per_cpu_s"] > 0
    speeds = report["loop"]["per_cpu_s"] / report["bucketed"]["per_cpu_s"]
    assert report["ratio"] == pytest.approx(speeds)  # the ratio of steps per CPU-s
    (main, detail) = rows({"agent_loop": report})
    assert main[0].startswith("agent loop steps per CPU-s (8 episodes") and main[4] == ">= 0.80"
    assert main[3] == f"{report['ratio']:.2f}" and main[5] in ("met", "NOT met")
    assert detail[1] == main[1] and detail[3] == f"{report['vs_one_batch']:.2f}"
