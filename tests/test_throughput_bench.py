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
