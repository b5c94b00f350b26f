"""Rounds read only what is new: the training pool and the round history read each finished
round once, and give what reading the whole run again would."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def three_round_run(tmp_path_factory):
    import yaml
    from typer.testing import CliRunner

    from pedagogy.cli import app
    from tests.conftest import QUICK

    tmp = tmp_path_factory.mktemp("flat")
    data = yaml.safe_load(yaml.safe_dump(QUICK))
    data.update(workdir=str(tmp / "work"), db=str(tmp / "work" / "pedagogy.db"), rounds=3)
    data["evaluation"] = {**data.get("evaluation", {}), "patience": None}
    (tmp / "c.yaml").write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["run", "--config", str(tmp / "c.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    return str(tmp / "work" / "pedagogy.db")


def _domain(store, run_id):
    from pedagogy.config import config_from_dict
    from pedagogy.runner import build_domain_from

    return build_domain_from(config_from_dict(store.get_run(run_id).config))


def test_training_pool_reads_each_round_once_and_matches_a_full_read(three_round_run):
    from pedagogy.memory.store import open_store
    from pedagogy.training.data import examples_from_episodes
    from pedagogy.training.pool import TrainingPool

    store = open_store(three_round_run)
    (run,) = store.list_runs()
    domain = _domain(store, run.id)
    pool = TrainingPool(store, run.id, domain, acting=False, in_context=False)
    for r in (1, 2, 3):
        current, items, _ = pool.through(r)
        assert {e.round for e in current.episodes} == {r}
    assert pool.reads == 3  # each round once
    fresh = TrainingPool(store, run.id, domain, acting=False, in_context=False)
    assert fresh.through(3)[1] == items and fresh.reads == 3  # a resume reads them once
    episodes = store.episodes(run.id, with_turns=True)
    problems = store.get_problems(list({e.problem_id for e in episodes}))
    full = examples_from_episodes(episodes, problems, domain)
    key = [(i.episode_id, i.turn_id, i.polarity, i.prompt, i.completion) for i in items]
    assert key == [(i.episode_id, i.turn_id, i.polarity, i.prompt, i.completion) for i in full]
    assert key  # the run trained on something


def test_round_history_gives_the_profile_of_a_full_read(three_round_run):
    from pedagogy.agents.profile import StudentProfile
    from pedagogy.graphs.history import RoundHistory
    from pedagogy.memory.store import open_store

    store = open_store(three_round_run)
    (run,) = store.list_runs()
    history = RoundHistory(store, run.id, cell_of=lambda p: str(p.level))
    history.tallies(3)
    history.tallies(4)
    assert history.reads == 3  # rounds 1, 2 once, then round 3
    profile = StudentProfile()
    for r, results in sorted(history.tallies(4).items()):
        profile.update(r, results)
    full = StudentProfile.from_store(store, run.id)
    assert profile.counts == full.counts and profile.last_round == full.last_round
    cells = history.before(4, cells=True)
    assert len(cells) == len(store.episodes(run.id)) and all(a.cell for a in cells)
