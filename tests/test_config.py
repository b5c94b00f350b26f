import pytest

from pedagogy.config import load_config
from pedagogy.errors import ConfigError


def test_default_config_loads():
    cfg = load_config(None)
    assert cfg.student.model == "tiny" and cfg.teacher.kind == "scripted"
    assert cfg.db_url().endswith("pedagogy.db")


def test_partial_file_layers_over_default(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("rounds: 2\ntraining:\n  max_seconds: 5\n")
    cfg = load_config(p)
    assert cfg.rounds == 2 and cfg.training.max_seconds == 5
    assert cfg.training.learning_rate == 0.001  # untouched default kept


@pytest.mark.parametrize(
    "text, match",
    [
        ("rounds: [1\n", "not valid YAML"),
        ("rounds: -1\n", "rounds"),
        ("trainng: {}\n", "trainng: unknown key"),
        ("- a\n- b\n", "expected a mapping"),
        ("curriculum:\n  sampler: greedy\n", "curriculum.sampler"),
    ],
)
def test_malformed_config_names_the_problem(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_missing_file():
    with pytest.raises(ConfigError, match="pedagogy init"):
        load_config("/nonexistent/x.yaml")
