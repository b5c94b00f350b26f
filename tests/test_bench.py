"""The learning benchmark: arm table, aggregation over seeds, CLI errors, and a quick bench end to end."""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pedagogy.benchmarks import core
from pedagogy.benchmarks import learning as B
from pedagogy.benchmarks import stats as S
from pedagogy.cli import app
from pedagogy.errors import ConfigError

runner = CliRunner()


def test_each_ablation_switches_exactly_one_mechanism_back_to_standard():
    mechanisms = {
        "no_curriculum": {"curriculum.sampler", *B.SKILL_GRAPH},
        "no_utility": {"episodes.intervention"},
        "no_style": {"episodes.style"},
        "no_filter": {"training.filter"},
    }
    for arm, keys in mechanisms.items():
        changed = {k for k, v in B.ARMS[arm].items() if B.PEDAGOGY[k] != v}
        assert changed == keys, arm
        assert all(B.ARMS[arm][k] == B.STANDARD_KD[k] for k in keys), arm
    assert all(set(overrides) >= set(B.STANDARD_KD) for overrides in B.ARMS.values())


def test_each_add_one_arm_switches_exactly_one_mechanism_on():
    mechanisms = {
        "kd+curriculum": {"curriculum.sampler", *B.SKILL_GRAPH},
        "kd+graph": set(B.SKILL_GRAPH),
        "kd+bandit": {"curriculum.sampler"},
        "kd+grounded": {"curriculum.sampler", "curriculum.grounded"},
        "kd+utility": {"episodes.intervention"},
        "kd+style": {"episodes.style"},
        "kd+filter": {"training.filter"},
        "kd+redi": {"training.kind"},
        "kd+refine": {"curriculum.refine"},
    }
    for arm, keys in mechanisms.items():
        changed = {k for k, v in B.ARMS[arm].items() if B.STANDARD_KD.get(k) != v}
        assert changed == keys, arm
    assert B.ARMS["kd+redi"]["training.kind"] == "redi"
    # the full arm is exactly the union of its mechanisms
    union = {k: v for keys in B.MECHANISMS.values() for k, v in keys.items()}
    assert {**B.STANDARD_KD, **union} == B.PEDAGOGY


def test_every_arm_builds_a_valid_config_with_the_shared_settings(tmp_path):
    settings = B.BenchSettings()
    assert settings.budget == settings.episodes // 4
    for arm in B.ARMS:
        cfg = B.arm_config(arm, 2, settings, tmp_path)
        share = B.ARMS[arm].get(B.BUDGET_SHARE, 1)
        assert (cfg.seed, cfg.rounds, cfg.episodes.explain_budget) == (
            2,
            settings.rounds,
            round(settings.budget * share),
        )
        assert cfg.episodes.per_round == settings.episodes
        assert cfg.training.max_seconds == settings.train_seconds
        assert cfg.training.max_steps == settings.train_steps
        assert cfg.db == str(tmp_path / "bench.db")
        assert cfg.curriculum.sampler == B.ARMS[arm]["curriculum.sampler"]
    quick = B.arm_config("pedagogy", 0, B.BenchSettings.quick_settings(), tmp_path)
    assert quick.domain.options["levels"] == {"chain_sum": B.QUICK_LEVELS}


def _summary(**arms: tuple[float, list[float]]) -> dict:
    """{arm: (mean accuracy, per-seed differences to standard_kd)} -> a summary with "paired"."""
    out = {}
    for arm, (mean, diffs) in arms.items():
        out[arm] = {"mean_accuracy": {"mean": mean, "std": 0.0}}
        if diffs:
            out[arm]["paired"] = S.paired_interval(diffs).as_dict()
    return out


def test_target_lines_say_whether_the_target_is_met_with_the_paired_interval():
    lines = B.target_lines(
        _summary(
            standard_kd=(0.16, []),
            pedagogy=(0.25, [0.08, 0.09, 0.10]),
            **{"pedagogy@half": (0.17, [0.0, 0.01, 0.02])},
        )
    )
    assert lines[0] == (
        "pedagogy vs standard_kd at the same budget: +9.0 points, 95% CI [+6.5, +11.5] over 3 "
        "paired seeds (target +10): not met; the interval excludes zero"
    )
    assert lines[1].startswith("pedagogy with half the budget vs standard_kd (0.170 vs 0.160): ")
    assert lines[1].endswith("(target: not below): met; the interval includes zero")
    assert lines[2] == (
        "best arm: pedagogy (0.250, +9.0 points over standard_kd, paired +9.0 [+6.5, +11.5])"
    )
    # The mean reaches the target: met only where the interval excludes zero.
    met = B.target_lines(_summary(standard_kd=(0.1, []), pedagogy=(0.2, [0.1, 0.11, 0.12])))
    assert met[0].endswith("(target +10): met; the interval excludes zero")
    noisy = B.target_lines(_summary(standard_kd=(0.1, []), pedagogy=(0.2, [-0.1, 0.1, 0.3])))
    assert noisy[0].endswith("(target +10): not shown; the interval includes zero")
    one = B.target_lines(_summary(standard_kd=(0.1, []), pedagogy=(0.3, [0.2])))
    assert "no interval with 1 seed" in one[0]
    assert one[0].endswith("not shown; a single seed is not evidence")
    below = B.target_lines(_summary(standard_kd=(0.2, []), **{"pedagogy@half": (0.19, [-0.01])}))
    assert "not met" in below[0]
    assert B.target_lines(_summary(pedagogy=(0.2, [0.1]))) == []


def test_t_quantiles_match_the_tables():
    # Two-sided 95% (and 90%) critical values of Student's t, from any statistics table.
    for df, q975, q95 in [
        (1, 12.706, 6.314),
        (2, 4.303, 2.920),
        (3, 3.182, 2.353),
        (4, 2.776, 2.132),
        (9, 2.262, 1.833),
        (30, 2.042, 1.697),
        (100, 1.984, 1.660),
    ]:
        assert S.t_quantile(df) == pytest.approx(q975, abs=1e-3), df
        assert S.t_quantile(df, 0.95) == pytest.approx(q95, abs=1e-3), df
    with pytest.raises(ConfigError, match="df must be an integer >= 1"):
        S.t_quantile(0)


def test_paired_interval_on_fixed_differences():
    # mean .2, sd .1, n 3: half-width 4.303 * .1 / sqrt(3) = .2484
    p = S.paired_interval([0.1, 0.2, 0.3])
    assert (p.n, p.mean) == (3, pytest.approx(0.2))
    assert (p.low, p.high) == (pytest.approx(-0.0484, abs=1e-4), pytest.approx(0.4484, abs=1e-4))
    assert not p.excludes_zero
    assert S.paired_interval([0.3, 0.31, 0.29]).excludes_zero
    assert S.paired_interval([-0.3, -0.31, -0.29]).excludes_zero  # below zero counts too
    single = S.paired_interval([0.5])
    assert single.n == 1 and single.mean == 0.5 and math.isnan(single.low)
    assert not single.excludes_zero
    assert S.paired_interval([]).n == 0
    assert S.format_paired(p) == "+20.0 [-4.8, +44.8]"
    assert S.format_paired(single) == "+50.0 (n=1)"


# Paired intervals from the hand-written t-quantile this project used before scipy.stats (exact
# closed forms of Student's t inverted by bisection), printed with repr: (diffs, level) -> (mean,
# low, high). scipy must give the same intervals.
HAND_WRITTEN_INTERVALS = [
    ([0.1, 0.2, 0.3], 0.95, (0.19999999999999998, -0.048413771175032844, 0.4484137711750328)),
    ([0.40, 0.42, 0.44], 0.95, (0.42, 0.3703172457649934, 0.46968275423500655)),
    ([-0.30, -0.31, -0.32], 0.95, (-0.31, -0.3348413771175033, -0.2851586228824967)),
    (
        [0.05, -0.02, 0.11, 0.07],
        0.95,
        (0.052500000000000005, -0.0340475229827393, 0.1390475229827393),
    ),
    ([0.2, 0.1], 0.95, (0.15000000000000002, -0.48531023680873375, 0.7853102368087338)),
    (
        [0.12, 0.03, -0.05, 0.2, 0.08, 0.15, -0.01, 0.09, 0.04, 0.11],
        0.95,
        (0.076, 0.022234425544831043, 0.12976557445516895),
    ),
    (
        [-0.0417, -0.0417, -0.0417],
        0.95,
        (-0.041699999999999994, -0.041699999999999994, -0.041699999999999994),
    ),
    (
        [0.05, -0.02, 0.11, 0.07],
        0.90,
        (0.052500000000000005, -0.011500380971735391, 0.1165003809717354),
    ),
    ([0.3, 0.1, 0.25, 0.2, 0.15], 0.99, (0.2, 0.03722066476211111, 0.3627793352378889)),
]
PRINTED = [  # format_paired of each, as the hand-written quantile printed them
    "+20.0 [-4.8, +44.8]",
    "+42.0 [+37.0, +47.0]",
    "-31.0 [-33.5, -28.5]",
    "+5.3 [-3.4, +13.9]",
    "+15.0 [-48.5, +78.5]",
    "+7.6 [+2.2, +13.0]",
    "-4.2 [-4.2, -4.2]",
    "+5.3 [-1.2, +11.7]",
    "+20.0 [+3.7, +36.3]",
]
HAND_WRITTEN_QUANTILES = {  # df: (t at .975, .95, .995)
    1: (12.706204736174676, 6.313751514675028, 63.65674116287124),
    2: (4.302652729749459, 2.919985580353723, 9.92484320091826),
    4: (2.7764451051977934, 2.1318467863266495, 4.604094871349982),
    30: (2.0422724563012418, 1.6972608865939578, 2.7499956535672103),
}


def test_scipy_gives_the_intervals_of_the_hand_written_quantile():
    for (diffs, level, (mean, low, high)), printed in zip(HAND_WRITTEN_INTERVALS, PRINTED):
        p = S.paired_interval(diffs, level)
        assert (p.n, p.level) == (len(diffs), level)
        assert (p.mean, p.low, p.high) == (
            pytest.approx(mean, abs=1e-12),
            pytest.approx(low, abs=1e-12),
            pytest.approx(high, abs=1e-12),
        ), diffs
        assert S.format_paired(p) == printed
        assert p.excludes_zero == S.Paired(len(diffs), mean, low, high, level).excludes_zero
    for df, quantiles in HAND_WRITTEN_QUANTILES.items():
        for p, q in zip((0.975, 0.95, 0.995), quantiles):
            assert S.t_quantile(df, p) == pytest.approx(q, rel=1e-12), (df, p)


def test_the_old_module_paths_still_work_and_warn():
    import pedagogy.bench as old
    import pedagogy.bench_agents as old_agents
    from pedagogy.benchmarks import agents, trajectories

    with pytest.warns(DeprecationWarning, match=r"pedagogy\.benchmarks\.learning\.ARMS"):
        assert old.ARMS is B.ARMS
    with pytest.warns(DeprecationWarning, match="LearningBench"):
        assert old.Bench is B.LearningBench
    with pytest.warns(DeprecationWarning):
        assert old.paired_interval is S.paired_interval and old.run_one is core.run_one
    with pytest.warns(DeprecationWarning):
        assert old.STANDARD_KD == B.STANDARD_KD and old._level_key is S.level_key
    with pytest.warns(DeprecationWarning, match=r"pedagogy\.benchmarks\.agents\.AgentBench"):
        assert old_agents.AgentBench is agents.AgentBench
    with pytest.warns(DeprecationWarning):
        assert old_agents.trajectory_stats is trajectories.trajectory_stats
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        old.nope  # noqa: B018
    assert "ARMS" in dir(old) and "AgentBench" in dir(old_agents)


def test_the_learning_curve_bench_moved_and_its_old_command_says_where(capsys):
    import importlib
    import sys

    from pedagogy.benchmarks import learning_curve

    assert learning_curve._parse(["--rounds", "2", "--steps-per-round", "5"]).rounds == 2
    sys.modules.pop("pedagogy.training.bench_learning_curve", None)
    with pytest.warns(DeprecationWarning, match="pedagogy.benchmarks.learning_curve"):
        old = importlib.import_module("pedagogy.training.bench_learning_curve")
    with pytest.raises(SystemExit) as exit_info:
        old.main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "python -m pedagogy.benchmarks.learning_curve" in err


def _run(arm, seed, accs, status="completed"):
    return {
        "arm": arm,
        "seed": seed,
        "status": status,
        "heldout_final": {f"s@{i}": a for i, a in enumerate(accs)},
        "teacher_tokens": 0,
        "explained": 0,
        "seconds": 1.0,
    }


def test_paired_differences_pair_by_seed_and_skip_unpaired_or_failed_runs():
    runs = [
        _run("base", 0, [0.2, 0.0]),
        _run("base", 1, [0.4, 0.2]),
        _run("base", 2, [0.0, 0.0]),
        _run("arm", 1, [0.6, 0.4]),  # seed order in the file does not matter
        _run("arm", 0, [0.3, 0.1]),
        _run("arm", 2, [0.9, 0.9], status="failed"),
        _run("arm", 3, [0.9, 0.9]),  # no baseline run for seed 3
    ]
    diffs = S.paired_differences(runs, "arm", "base", S.mean_heldout)
    assert diffs == {0: pytest.approx(0.1), 1: pytest.approx(0.2)}
    only_first = S.paired_differences(runs, "arm", "base", S.levels_mean(["s@1"]))
    assert only_first == {0: pytest.approx(0.1), 1: pytest.approx(0.2)}
    assert S.paired_differences(runs, "arm", "base", S.levels_mean(["s@7"])) == {}
    summary = S.paired_summary(runs, ["base", "arm"], "base")
    assert set(summary) == {"arm"} and summary["arm"].n == 2
    # The learning bench stores the pairing with each arm's summary, and the table shows it.
    bench = B.LearningBench(Path("x"), B.BenchSettings(), ["base", "arm"], [0, 1], baseline="base")
    s = bench.summarise(runs, ["base", "arm"])
    assert "paired" not in s["base"]
    assert s["arm"]["paired"]["n"] == 2 and s["arm"]["paired"]["mean"] == pytest.approx(0.15)
    assert s["arm"]["paired"]["excludes_zero"] is False  # two pairs: t(1) = 12.7
    header, rows = B.table_rows(s)
    assert header[-1] == "Δmean vs standard_kd [95% CI]"
    assert rows[0][-1] == "-" and rows[1][-1].startswith("+15.0 [")


def test_verdict_outcomes():
    up = S.paired_interval([0.30, 0.32, 0.34])
    assert S.verdict("x", up, 0.30).endswith("(target +30): met; the interval excludes zero")
    assert S.verdict("x", up, 0.40).endswith("(target +40): not met; the interval excludes zero")
    assert S.verdict("x", S.Paired(0, math.nan, math.nan, math.nan), 0.3) == (
        "x: no paired seeds (target +30): not shown"
    )


def test_an_arm_with_a_key_the_config_lacks_names_the_arm_and_key(tmp_path, monkeypatch):
    monkeypatch.setitem(B.ARMS, "future", {**B.PEDAGOGY, "episodes.telepathy": True})
    with pytest.raises(ConfigError, match=r"arm 'future': episodes\.telepathy: unknown key"):
        B.arm_config("future", 0, B.BenchSettings(), tmp_path)


def test_unknown_arm_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "b"
    result = runner.invoke(
        app, ["bench", "learning", "--quick", "--arms", "pedagogy,nope", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "unknown arm 'nope'" in result.output and "standard_kd" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_mean_and_std_over_seeds_on_fixed_numbers():
    def run(arm, seed, l0, l1, tokens, explained, seconds, status="completed"):
        return {
            "arm": arm,
            "seed": seed,
            "status": status,
            "heldout_final": {"s@0": l0, "s@1": l1},
            "teacher_tokens": tokens,
            "explained": explained,
            "seconds": seconds,
        }

    runs = [
        run("a", 0, 0.5, 0.1, 100, 10, 60.0),
        run("a", 1, 0.7, 0.3, 300, 30, 80.0),
        run("a", 2, 0.9, 0.2, 200, 20, 70.0),
        run("b", 0, 0.4, 0.0, 50, 5, 10.0),
        run("b", 1, 0.0, 0.0, 0, 0, 1.0, status="failed"),  # left out
    ]
    s = core.aggregate(runs, ["a", "b", "c"])
    assert set(s) == {"a", "b"}
    a = s["a"]
    assert a["seeds"] == [0, 1, 2]
    assert a["accuracy"]["s@0"] == pytest.approx({"mean": 0.7, "std": 0.2})
    assert a["accuracy"]["s@1"] == pytest.approx({"mean": 0.2, "std": 0.1})
    # per-run means .3 .5 .55: deviations -.15 .05 .10, sample variance .035 / 2
    assert a["mean_accuracy"] == pytest.approx({"mean": 0.45, "std": 0.0175**0.5})
    assert a["teacher_tokens"] == pytest.approx({"mean": 200, "std": 100})
    assert a["explained"] == pytest.approx({"mean": 20, "std": 10})
    assert a["seconds"] == pytest.approx({"mean": 70, "std": 10})
    assert s["b"]["seeds"] == [0] and s["b"]["accuracy"]["s@0"] == {"mean": 0.4, "std": 0.0}
    header, rows = B.table_rows(s)
    assert header[:5] == ["arm", "seeds", "s@0", "s@1", "mean"]
    assert rows[0][:5] == ["a", "3", "0.70±0.20", "0.20±0.10", "0.45±0.13"]


def test_levels_sort_numerically():
    runs = [
        {
            "arm": "a",
            "seed": 0,
            "status": "completed",
            "teacher_tokens": 0,
            "explained": 0,
            "seconds": 1.0,
            "heldout_final": {f"s@{i}": 0.1 * i for i in (10, 2, 0)},
        }
    ]
    assert list(core.aggregate(runs, ["a"])["a"]["accuracy"]) == ["s@0", "s@2", "s@10"]


def test_a_rerun_with_other_settings_under_the_same_out_is_refused(tmp_path):
    first = B.LearningBench(tmp_path, B.BenchSettings(rounds=2), ["pedagogy"], [0])
    first.save(first.load())
    other = B.LearningBench(tmp_path, B.BenchSettings(rounds=3), ["pedagogy"], [0])
    with pytest.raises(ConfigError, match="rounds=2, not 3"):
        other.load()


@pytest.mark.slow
def test_quick_bench_end_to_end_then_rerun_skips_finished_runs(tmp_path):
    out = tmp_path / "bench"
    result = runner.invoke(app, ["bench", "learning", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "standard_kd seed 0: L0=" in result.stderr and "pedagogy seed 0: L0=" in result.stderr
    assert "held-out accuracy" in result.stdout and "standard_kd" in result.stdout
    # The verdict on the target, each on one line however narrow the output.
    assert any(
        line.startswith("pedagogy vs standard_kd at the same budget: ")
        and line.endswith(
            ("not shown; a single seed is not evidence", "not met; a single seed is not evidence")
        )
        for line in result.stdout.splitlines()
    ), result.stdout

    data = json.loads((out / "bench.json").read_text())
    assert sorted((r["arm"], r["seed"], r["status"]) for r in data["runs"]) == [
        ("pedagogy", 0, "completed"),
        ("standard_kd", 0, "completed"),
    ]
    for r in data["runs"]:
        assert set(r["heldout_final"]) == {"chain_sum@0", "chain_sum@1"}
        assert r["episodes"] == 96
        assert 0 < r["explained"] <= 2 * data["settings"]["budget"]  # the budget binds
        assert r["teacher_tokens"] > 0
    assert set(data["summary"]) == {"standard_kd", "pedagogy"}
    assert (out / "bench.png").stat().st_size > 5000

    again = runner.invoke(app, ["bench", "learning", "--quick", "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert "2 of 2 runs already done" in again.stderr and "running" not in again.stderr
    assert json.loads(again.stdout) == data["summary"]
    rerun = json.loads((out / "bench.json").read_text())
    assert [r["run_id"] for r in rerun["runs"]] == [r["run_id"] for r in data["runs"]]


def _fake_run_one(calls):
    async def run_one(arm, seed, config):
        calls.append((arm, seed))
        if arm == "no_filter":
            return {
                "arm": arm,
                "seed": seed,
                "status": "failed",
                "error": "RuntimeError: boom",
                "seconds": 0.1,
            }
        acc = {"chain_sum@0": 0.5 + 0.1 * seed, "chain_sum@1": 0.1}
        return {
            "arm": arm,
            "seed": seed,
            "status": "completed",
            "run_id": f"{arm}-{seed}",
            "seconds": 1.0,
            "heldout_final": acc,
            "teacher_tokens": 10,
            "explained": 2,
        }

    return run_one


def test_runs_are_saved_one_by_one_and_a_rerun_does_only_the_missing_ones(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(core, "run_one", _fake_run_one(calls))
    settings = B.BenchSettings.quick_settings()
    lines: list[str] = []
    data = B.LearningBench(
        tmp_path, settings, ["pedagogy", "no_filter"], [0, 1], log=lines.append
    ).run()
    assert calls == [("pedagogy", 0), ("no_filter", 0), ("pedagogy", 1), ("no_filter", 1)]
    assert [f["arm"] for f in data["failed"]] == ["no_filter", "no_filter"]
    assert data["summary"]["pedagogy"]["accuracy"]["chain_sum@0"] == pytest.approx(
        {"mean": 0.55, "std": 0.1 / 2**0.5}
    )
    assert sum("pedagogy seed 1: L0=0.60 L1=0.10" in line for line in lines) == 1

    calls.clear()
    lines.clear()
    data = B.LearningBench(
        tmp_path, settings, ["pedagogy", "no_filter", "standard_kd"], [0, 1, 2], log=lines.append
    ).run()
    done_before = {("pedagogy", 0), ("pedagogy", 1)}
    assert not done_before & set(calls) and ("no_filter", 0) in calls  # failed runs are retried
    assert len(calls) == 9 - 2 and "2 of 9 runs already done" in lines[0]
    stored = json.loads((tmp_path / "bench.json").read_text())
    assert len(stored["runs"]) == 9 and set(stored["arms"]) == {
        "pedagogy",
        "no_filter",
        "standard_kd",
    }


def test_a_failed_run_makes_the_cli_exit_1_after_the_table(tmp_path, monkeypatch):
    monkeypatch.setattr(core, "run_one", _fake_run_one([]))
    out = tmp_path / "b"
    result = runner.invoke(
        app,
        [
            "bench",
            "learning",
            "--quick",
            "--arms",
            "pedagogy,no_filter",
            "--out",
            str(out),
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 1, result.output
    assert (
        "pedagogy" in result.stdout
        and "1 run(s) failed" in result.stderr
        and "boom" in result.stderr
    )
    assert (out / "bench.png").exists()


def test_default_arms_and_arms_run_only_by_name():
    assert B.parse_arms(None) == B.DEFAULT_ARMS and len(B.DEFAULT_ARMS) == 15
    assert (
        B.arm_config("pedagogy@half", 0, B.BenchSettings(), Path("x")).episodes.explain_budget == 50
    )
    assert {k: v for k, v in B.ARMS["pedagogy@half"].items() if k != B.BUDGET_SHARE} == B.PEDAGOGY
    assert B.parse_arms(None, quick=True) == B.QUICK_ARMS
    extra = [a for a in B.ARMS if a not in B.DEFAULT_ARMS]
    assert extra == [
        "kd+graph",
        "kd+chain",
        "kd+in_context",
        "kd+utility+in_context",
        "kd+adapt",
        "kd+curriculum+adapt",
        "pedagogy+adapt",
    ]
    assert B.parse_arms(",".join(extra)) == extra
    assert B.ARMS["kd+in_context"] == {**B.STANDARD_KD, "training.in_context": True}
    assert B.ARMS["pedagogy+adapt"] == {**B.PEDAGOGY, "generator.adapt": True}
    config = B.arm_config("kd+adapt", 0, B.BenchSettings(), Path("x"))
    assert config.generator.adapt and config.curriculum.sampler == "uniform"


@pytest.mark.slow
def test_runs_in_parallel_processes_give_the_numbers_of_runs_one_after_another(tmp_path):
    """Two worker processes, each pinned to its share of the cores, writing to one SQLite file:
    every run's numbers are those of the same run done alone (jobs bounded by steps alone)."""
    from dataclasses import replace

    settings = replace(B.BenchSettings.quick_settings(), train_seconds=600.0)
    lines: list[str] = []
    alone = B.LearningBench(tmp_path / "one", settings, ["standard_kd"], [0, 1]).run()
    both = B.LearningBench(
        tmp_path / "two", settings, ["standard_kd"], [0, 1], log=lines.append, jobs=2
    ).run()

    def numbers(data):
        keep = ("status", "heldout_final", "explained", "episodes", "teacher_tokens", "promoted")
        return {(r["arm"], r["seed"]): {k: r[k] for k in keep} for r in data["runs"]}

    assert numbers(both) == numbers(alone)
    assert all(r["status"] == "completed" for r in both["runs"])
    assert sum("running" in line for line in lines) == 2
    assert (
        sum(line.startswith(("[1/2] standard_kd seed", "[2/2] standard_kd seed")) for line in lines)
        == 4
    )
