import os

import pytest
import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch's OpenMP threads spin while they wait for work. On a machine whose cores are busy (CI
# shares them) a spinning thread holds the core its partner needs, and a tiny model's training
# step takes 20x longer: 60 SFT steps took 181 s instead of 9 s at load 7. Passive threads
# sleep instead. Set before torch is imported; subprocesses (the CLI runs) inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest_plugins = ["tests.conftest_postgres"]

QUICK = {
    "name": "quick",
    "rounds": 2,
    "domain": {
        "name": "reasoning_gym",
        "options": {
            "skills": ["chain_sum"],
            "compact": True,
            "levels": {
                "chain_sum": [{"num_terms": 0, "num_digits": 0}, {"num_terms": 0, "num_digits": 1}]
            },
        },
    },
    "student": {"options": {"tiny": {}}},
    "episodes": {"per_round": 48, "write_batch": 16},
    # Step-bounded: the same training on any machine, however busy (the 3 s limit this replaces
    # gave 10 to 40 steps, by the load); the time limit is a safety net that never binds.
    "training": {"max_steps": 40, "max_seconds": 3600, "batch_size": 16},
    "evaluation": {"heldout_per_arm": 16},
}


@pytest.fixture
def quick_config(tmp_path):
    """Write a small, fast config (2 rounds, 2 levels) into tmp_path; returns its path."""

    def make(**overrides):
        data = yaml.safe_load(yaml.safe_dump(QUICK))
        data["workdir"] = str(tmp_path / "work")
        data["db"] = str(tmp_path / "work" / "pedagogy.db")
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return make
