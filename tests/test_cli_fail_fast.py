"""A config with a typo fails before `pedagogy run` pays for the loop's imports.

The check of a config's names takes a fraction of a second; LangGraph, the store and plotting
take seconds more. So `run` loads and checks the config first, and a typo is one line, exit 2,
nothing written, with none of the loop's modules imported (checked in a fresh interpreter).
"""

import json
import subprocess
import sys

import yaml

CHILD = """
import json, sys
from typer.testing import CliRunner
from pedagogy.cli import app

result = CliRunner().invoke(app, ["run", "-c", sys.argv[1]])
loaded = [m for m in ("pedagogy.runner", "langgraph", "pedagogy.report") if m in sys.modules]
print(json.dumps({"code": result.exit_code, "output": result.output, "loaded": loaded}))
"""


def test_a_typo_in_a_config_fails_before_the_loop_is_imported(tmp_path):
    config = tmp_path / "bad.yaml"
    work = tmp_path / "work"
    config.write_text(
        yaml.safe_dump({"workdir": str(work), "agent": {"enabled": True, "tools": ["calculater"]}})
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["code"] == 2 and got["loaded"] == []
    assert "unknown tool 'calculater'; choose one of: calculator" in got["output"]
    assert len(got["output"].strip().splitlines()) == 1
    assert not work.exists()  # nothing written
