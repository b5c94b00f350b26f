import pytest

from pedagogy.config import load_config
from pedagogy.errors import ConfigError


def test_default_config_loads():
    cfg = load_config(None)
    assert cfg.student.model == "tiny" and cfg.teacher.kind == "scripted"
    assert cfg.db_url().endswith("pedagogy.db")


def test_the_commented_default_names_every_setting():
    """`pedagogy init` writes default_config.yaml, and a run without --config uses it: every
    setting of RunConfig is in it, so that a user reading it sees every knob."""
    import yaml
    from pydantic import BaseModel

    from pedagogy.config import DEFAULT_CONFIG_PATH

    written = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    loaded = load_config(None)
    missing = []

    def walk(section: dict, value: BaseModel, path: str) -> None:
        for name in type(value).model_fields:
            if name not in section:
                missing.append(path + name)
                continue
            sub = getattr(value, name)
            if isinstance(sub, BaseModel) and isinstance(section[name], dict):
                walk(section[name], sub, f"{path}{name}.")

    walk(written, loaded, "")
    assert missing == [], f"add these to default_config.yaml: {missing}"


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


def test_every_validation_error_of_a_config_is_listed(tmp_path):
    from pedagogy.config import load_config
    from pedagogy.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text("rounds: zero\nepisodes:\n  per_round: -1\ntraining:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith("3 problems in")
    for where in ("rounds:", "episodes.per_round:", "training.batch_sise: unknown key"):
        assert where in text, text


def test_the_models_and_the_commented_default_config_agree():
    """One source of defaults: `RunConfig()` and the YAML `pedagogy init` writes are the same."""
    from pedagogy.config import RunConfig

    assert RunConfig().model_dump() == load_config(None).model_dump()
