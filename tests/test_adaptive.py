"""The adaptive generator: pose, inside a level, the settings the student is ready for."""

from __future__ import annotations

import random

import pytest
from typer.testing import CliRunner

from pedagogy.agents.adaptive import AdaptiveGenerator, CellStats, cell_key
from pedagogy.cli import app
from pedagogy.domains.base import Problem, has_parameters, problem_parameters
from pedagogy.errors import ConfigError
from pedagogy.memory.store import open_store

runner = CliRunner()


def _problems(cells: dict[str, int]) -> list[Problem]:
    out = []
    for cell, n in cells.items():
        out += [
            Problem("toy", "add", 0, f"{cell}:{i}", "0", metadata={"cell": cell}) for i in range(n)
        ]
    return out


def _cell(p: Problem) -> str:
    return p.metadata["cell"]


def test_cell_key_and_success_estimates():
    assert cell_key({"num_terms": 3, "num_digits": 1}) == "num_digits=1,num_terms=3"
    assert cell_key(None) == "" and cell_key({}) == ""
    stats = CellStats.from_attempts([("a", "x", True), ("a", "x", False), ("a", "x", True)])
    assert stats.success("a", "x") == pytest.approx(3 / 5)  # (2 + 1) / (3 + 2)
    assert stats.success("a", "unseen") == 0.5 and stats.attempts("a", "unseen") == 0
    assert stats.success("b", "x") == 0.5  # per arm


def test_weights_peak_at_the_target_and_never_reach_zero():
    g = AdaptiveGenerator(target=0.5, width=0.25, floor=0.05)
    assert g.weight(0.5) == pytest.approx(1.0)
    assert g.weight(0.0) == g.weight(1.0) and 0.05 < g.weight(1.0) < 0.1
    assert g.weight(0.4) > g.weight(0.2) > g.weight(0.0)


def test_choose_poses_the_cells_near_the_target():
    # ready: 10/20 solved; mastered: 40/40; out of reach: 0/40. 100 candidates each, pose 60.
    attempts = [("a", "ready", i < 10) for i in range(20)]
    attempts += [("a", "mastered", True)] * 40 + [("a", "hard", False)] * 40
    stats = CellStats.from_attempts(attempts)
    candidates = _problems({"ready": 100, "mastered": 100, "hard": 100})
    g = AdaptiveGenerator()
    posed, report = g.choose(random.Random(0), candidates, 60, "a", stats, _cell)
    assert len(posed) == 60 and len({p.prompt for p in posed}) == 60
    assert sum(r["posed"] for r in report.values()) == 60
    assert report["ready"]["posed"] >= 50, report  # weight 0.98 against 0.06 each
    assert report["mastered"]["posed"] + report["hard"]["posed"] <= 10
    assert report["hard"]["attempts"] == 40 and report["ready"]["candidates"] == 100
    again, _ = g.choose(random.Random(0), candidates, 60, "a", stats, _cell)
    assert again == posed  # the caller's seeded RNG decides
    # With nothing known, every cell weighs the same: the draw follows the candidates' mix.
    _, fresh = g.choose(random.Random(1), candidates, 150, "a", CellStats(), _cell)
    assert all(30 <= r["posed"] <= 70 for r in fresh.values()), fresh
    # Fewer candidates than wanted: all of them.
    few, _ = g.choose(random.Random(0), candidates[:3], 10, "a", stats, _cell)
    assert few == candidates[:3]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": 1.5}, r"target must be in \[0.0, 1.0\], got 1.5"),
        ({"width": 0}, "width must be > 0, got 0; try 0.25"),
        ({"floor": -0.1}, "floor must be in"),
        ({"oversample": 0}, "oversample must be an integer >= 1, got 0; try 4"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AdaptiveGenerator(**kwargs)


def test_reasoning_gym_problems_carry_their_generator_settings():
    from pedagogy.domains.reasoning_gym import ReasoningGymDomain

    domain = ReasoningGymDomain(
        skills=["chain_sum"],
        compact=True,
        levels={
            "chain_sum": [{"num_terms": 0, "num_digits": 0}, {"num_terms": 2, "num_digits": 2}]
        },
    )
    assert has_parameters(domain)
    hard = domain.generate(random.Random(0), 40, "chain_sum", 1)
    cells = {cell_key(problem_parameters(domain, p)) for p in hard}
    assert len(cells) > 3  # a level is a range of settings
    for p in hard:
        params = problem_parameters(domain, p)
        terms = p.prompt.count("+") + p.prompt.count("-") - p.prompt.count("--") + 1
        assert params["num_terms"] == terms - p.prompt.startswith("-"), (p.prompt, params)
    easy = domain.generate(random.Random(0), 10, "chain_sum", 0)
    assert {cell_key(problem_parameters(domain, p)) for p in easy} == {"num_digits=1,num_terms=2"}
    assert problem_parameters(object(), easy[0]) is None and not has_parameters(object())


def test_loop_poses_by_the_students_success_per_setting(quick_config, tmp_path):
    cfg = quick_config(
        generator={"adapt": True},
        episodes={"per_round": 48},
    )
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    (run,) = store.list_runs()
    made = store.decisions(run.id, kind="generator_params")
    assert {d.round for d in made} == {1, 2}
    episodes = store.episodes(run.id)
    problems = store.get_problems(sorted({e.problem_id for e in episodes}))
    from pedagogy.domains.reasoning_gym import ReasoningGymDomain

    domain = ReasoningGymDomain(**yaml_domain_options(cfg))
    for d in made:
        mine = [e for e in episodes if e.round == d.round and e.arm == d.subject]
        assert sum(c["posed"] for c in d.detail["cells"].values()) == len(mine)
        assert all(c["candidates"] >= c["posed"] for c in d.detail["cells"].values())
        if d.round == 2:  # what round 1's first attempts showed, per setting, from SQL
            for cell, c in d.detail["cells"].items():
                seen = [
                    e
                    for e in episodes
                    if e.round == 1
                    and e.arm == d.subject
                    and cell_key(problem_parameters(domain, problems[e.problem_id])) == cell
                ]
                assert c["attempts"] == len(seen)
                assert c["success"] == pytest.approx(
                    (sum(e.correct_first for e in seen) + 1) / (len(seen) + 2)
                )
    shown = runner.invoke(app, ["show", run.id, "--db", str(tmp_path / "work" / "pedagogy.db")])
    assert "generator_params" in shown.output


def yaml_domain_options(cfg_path) -> dict:
    import yaml

    return yaml.safe_load(cfg_path.read_text())["domain"]["options"]
