import hashlib
import os
from pathlib import Path

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
    # Every round runs, whatever the student learned: with the plateau stop a 3-round test would
    # depend on how far a few steps of training got (tests of the stop set it themselves).
    "evaluation": {"heldout_per_arm": 16, "patience": None},
}


@pytest.fixture
def restore_registries():
    """Every part registry as it was before the test. Every test that registers a part (domain,
    tool, graph, trainer, backend, sampler, policy, style) in this process takes it: a
    registration lasts, and would show in every later test's names."""
    from pedagogy.agents import curriculum, explanations, intervention
    from pedagogy.backends import registry as backends
    from pedagogy.domains.registry import DOMAINS
    from pedagogy.graphs.registry import GRAPHS
    from pedagogy.tools.registry import TOOLS
    from pedagogy.training import trainers

    registries = [
        DOMAINS,
        TOOLS,
        GRAPHS,
        trainers._REGISTRY,
        backends.BACKENDS,
        curriculum.SAMPLERS,
        intervention.POLICIES,
        explanations.STYLES,
    ]
    saved = [dict(r) for r in registries]
    yield
    for registry, entries in zip(registries, saved, strict=True):
        registry.clear()
        registry.update(entries)


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


# -- shared trained models (built once per test run) ---------------------------------------------
# Session-scoped: several test files read the same model, and training it is the expensive part.
# Read-only: a test that writes next to or into one copies it to its tmp_path first; each checks
# at the end of the run that nothing changed its files.


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _worked(a: int, b: int) -> str:
    return f"S:{a}+{b}={a + b}\nA:{a + b}"


def reading_examples() -> list[tuple[str, str]]:
    """1-digit 'a+b=' -> its worked solution, bare and with the worked solution in context (the
    re-attempt format), so that the student learns the format and to read its context."""
    examples = []
    for a in range(10):
        for b in range(10):
            examples.append((f"{a}+{b}=", _worked(a, b)))
            examples.append((f"{_worked(a, b)}\n{a}+{b}=", _worked(a, b)))
    return examples


@pytest.fixture(scope="session")
def reading_student(tmp_path_factory: pytest.TempPathFactory):
    """The folder of the tiny student (seed 0) after 150 SFT steps on `reading_examples()`: it
    writes 'S:a+b=s\\nA:s' and its log-probs follow a worked example in its context. Trained
    once per test run; read-only. The tests' margins were measured on exactly this model: the
    same examples in the same order, the same job."""
    from pedagogy.training.sft import SFTJobConfig, run_sft
    from pedagogy.training.tiny import build_tiny_student

    root = tmp_path_factory.mktemp("reading-student")
    base = build_tiny_student(root / "v0", seed=0)
    out = root / "v1"
    config = SFTJobConfig(max_steps=150, batch_size=32, learning_rate=5e-3)
    run_sft(base, out, reading_examples(), config)
    before = _digest(out)
    yield out
    assert _digest(out) == before, f"a test changed the shared model in {out}: copy it first"
