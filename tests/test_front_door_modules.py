"""The front door is split into modules (the runner's checks, models, agents and checkpointer;
the command groups): what moved keeps working from `pedagogy.runner` and `pedagogy.cli`."""

from __future__ import annotations

import runpy
import sys

import pytest

from pedagogy import assembly, checkpointing, cli_common, cli_show, run_checks, run_models


def test_the_runners_old_names_still_work_and_warn():
    import pedagogy.runner as runner

    with pytest.warns(DeprecationWarning, match=r"pedagogy\.assembly\.acting_agents"):
        assert runner.acting_agents is assembly.acting_agents
    with pytest.warns(DeprecationWarning, match=r"pedagogy\.run_checks\.sample_arms"):
        from pedagogy.runner import _sample_arms
    assert _sample_arms is run_checks.sample_arms
    with pytest.warns(DeprecationWarning, match=r"pedagogy\.run_models\.domain_context"):
        assert runner._domain_context is run_models.domain_context
    with pytest.warns(DeprecationWarning, match=r"pedagogy\.run_checks\.resolve_episode_graph"):
        assert runner._episode_graph is run_checks.resolve_episode_graph
    with pytest.warns(DeprecationWarning, match=r"pedagogy\.checkpointing\.checkpointer"):
        assert runner._checkpointer is checkpointing.checkpointer
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        runner.nope  # noqa: B018
    assert {"run_loop", "RunResult", "acting_agents", "agent_tools"} <= set(dir(runner))


def test_the_clis_old_names_still_work_and_warn():
    import pedagogy.cli as cli

    with pytest.warns(DeprecationWarning, match=r"pedagogy\.cli_show\._cost_cell"):
        assert cli._cost_cell is cli_show._cost_cell
    with pytest.warns(DeprecationWarning, match=r"pedagogy\.cli_common\.console"):
        assert cli.console is cli_common.console
    assert callable(cli.main) and cli.run.__name__ == "run" and cli.err_console is not None
    assert {"app", "main", "console", "DB_HELP"} <= set(dir(cli))


def test_python_dash_m_finds_every_command(monkeypatch, capsys):
    """`python -m pedagogy.cli` registers the commands before main() runs (bench throughput
    once was registered after it)."""
    monkeypatch.setattr(sys, "argv", ["pedagogy", "bench", "--help"])
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delitem(sys.modules, "pedagogy.cli", raising=False)  # run it as a fresh module
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("pedagogy.cli", run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("learning", "agents", "throughput"))
