"""The Python examples run, in quick mode, as a user would run them."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quickstart.py", "custom_domain.py", "custom_graph.py"])
def test_example_runs(name, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "completed" in proc.stdout


def test_examples_stay_small():
    domain_src = (EXAMPLES / "custom_domain.py").read_text()
    start = domain_src.index("class Doubling")
    end = domain_src.index("register_domain(")
    assert len(domain_src[start:end].strip().splitlines()) <= 40
    assert len((EXAMPLES / "custom_graph.py").read_text().splitlines()) <= 60


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    """Every YAML example passes the checks a run makes when it loads its config (registered
    names, backend options against the backend's parameters)."""
    from pedagogy.config import load_config

    cfg = load_config(path)
    assert cfg.name
