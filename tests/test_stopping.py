"""The plateau rule: a run stops once the held-out mean stops improving, and says why."""

from __future__ import annotations

import pytest

from pedagogy.graphs.stopping import Plateau, round_means
from pedagogy.memory.records import EvaluationRecord


def _evals(means: dict[int, float]) -> list[EvaluationRecord]:
    out = []
    for r, m in means.items():  # two arms whose mean is m
        out += [
            EvaluationRecord("run", r, f"v{r}", "s", 0, 100, round(100 * (m - 0.1))),
            EvaluationRecord("run", r, f"v{r}", "s", 1, 100, round(100 * (m + 0.1))),
        ]
    return out


def test_round_means_average_the_arms_of_each_round():
    means = round_means(_evals({0: 0.1, 1: 0.5}))
    assert means == pytest.approx({0: 0.1, 1: 0.5})


def test_patience_counts_rounds_without_a_gain_above_min_delta():
    rule = Plateau(patience=2, min_delta=0.01)
    means = {0: 0.0, 1: 0.4, 2: 0.6, 3: 0.605, 4: 0.59, 5: 0.7}
    assert rule.decide("run", 2, means, 10) is None
    assert rule.decide("run", 3, means, 10) is None  # one round without a gain
    stop = rule.decide("run", 4, means, 10)
    assert stop is not None and stop.kind == "stop" and stop.chosen and stop.round == 4
    assert stop.detail["rounds_left"] == 6 and "patience 2" in stop.detail["reason"]
    assert stop.value == pytest.approx(0.605)
    # A round that trained nothing (no evaluation) is a round without a gain too.
    assert rule.decide("run", 3, {0: 0.0, 1: 0.5}, 10) is not None


def test_no_stop_on_the_last_round_or_without_patience():
    means = {0: 0.5, 1: 0.5, 2: 0.5}
    assert Plateau(patience=2).decide("run", 2, means, 2) is None  # it ends anyway
    assert Plateau(patience=None).decide("run", 2, means, 5) is None
    assert Plateau(patience=1).decide("run", 1, means, 5) is not None


@pytest.mark.slow
def test_a_plateaued_run_stops_early_and_records_why(quick_config, tmp_path):
    from typer.testing import CliRunner

    from pedagogy.cli import app
    from pedagogy.memory.store import open_store

    # min_delta above 1: no round can count as a gain, so patience 1 stops after round 1.
    cfg = quick_config(rounds=3, evaluation={"patience": 1, "min_delta": 1.5})
    result = CliRunner().invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "stopped early" in result.output
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    (run,) = store.list_runs()
    assert run.status == "completed"
    assert {e.round for e in store.episodes(run.id)} == {1}
    (stop,) = store.decisions(run.id, kind="stop")
    assert stop.round == 1 and stop.detail["rounds_left"] == 2
