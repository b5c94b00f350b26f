"""The trainer seam: the registry, and one conformance run that every built-in trainer passes
(a few steps on the tiny student: loss logged, every weight moved, the output folder loads).

Offline: a seeded tiny student, no downloads; one thread (two shared cores run slower with two).
"""

from __future__ import annotations

import math

import pytest

from pedagogy.errors import ConfigError, UnknownNameError
from pedagogy.training import trainers
from pedagogy.training.trainers import (
    Trainer,
    TrainResult,
    build_trainer,
    known_trainers,
    register_trainer,
)

BUILTINS = ["dpo", "onpolicy", "redi", "sft", "trajectory_sft"]

PAIRS = [(f"{a}+{b}=", f"A:{a + b}") for a in range(4) for b in range(4)]
TRIPLES = [(p, c, f"A:{int(c[2:]) + 1}") for p, c in PAIRS]
TRAJECTORIES = [
    [(f"Q:{a}+{b}", False), (f"\nC:calculator({a}+{b})\n", True), (f"O:{a + b}\n", False),
     (f"A:{a + b}", True)]
    for a in range(4)
    for b in range(4)
]  # fmt: skip
ITEMS = {
    "sft": PAIRS,
    "dpo": TRIPLES,
    "redi": TRIPLES,
    "trajectory_sft": TRAJECTORIES,
    "onpolicy": PAIRS,
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from pedagogy.training.tiny import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("trainers") / "base", seed=0)


@pytest.fixture
def registry(monkeypatch):
    """The registry, restored after the test."""
    monkeypatch.setattr(trainers, "_REGISTRY", trainers._REGISTRY.copy())
    return trainers._REGISTRY


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# -- registry -----------------------------------------------------------------------------------


def test_unknown_trainer_lists_the_known_ones():
    assert set(BUILTINS) <= set(known_trainers())
    with pytest.raises(
        UnknownNameError, match=r"unknown trainer 'ppo'; choose one of: dpo, onpolicy, redi"
    ):
        build_trainer("ppo")


class EchoTrainer:
    """A user's trainer: copies the base folder (what a test double of a real one looks like)."""

    kind = "echo"
    config_class = dict

    def __init__(self, suffix: str = ""):
        self.suffix = suffix

    def train(self, base_path, items, output_dir, config=None, *, progress=None):
        import shutil

        shutil.copytree(base_path, output_dir)
        return TrainResult(output_dir, 0, 0.0, 0.0, 0.0, n_examples=len(items), kind=self.kind)


def test_register_and_build_a_custom_trainer(registry, base, tmp_path):
    register_trainer("echo", EchoTrainer)
    trainer = build_trainer("echo", suffix="x")
    assert isinstance(trainer, Trainer) and trainer.suffix == "x"
    assert "echo" in known_trainers()
    assert trainer.train(base, [1, 2], tmp_path / "copy").n_examples == 2
    with pytest.raises(ConfigError, match="already registered.*replace=True"):
        register_trainer("echo", EchoTrainer)
    register_trainer("echo", EchoTrainer, replace=True)
    with pytest.raises(ConfigError, match=r"bad options \['colour'\] for trainer 'echo'"):
        build_trainer("echo", colour="red")
    register_trainer("broken", lambda: object())
    with pytest.raises(ConfigError, match="returned object, which lacks the Trainer attributes"):
        build_trainer("broken")
    with pytest.raises(ConfigError, match="must be callable"):
        register_trainer("nothing", None)


def test_a_trainer_refuses_another_trainers_config(base, tmp_path):
    from pedagogy.training.sft import SFTJobConfig

    with pytest.raises(ConfigError, match="redi trainer needs a REDIJobConfig.*alpha=0.8"):
        build_trainer("redi").train(base, TRIPLES, tmp_path / "x", SFTJobConfig(max_steps=1))
    with pytest.raises(ConfigError, match="dpo trainer needs a DPOJobConfig.*beta=0.1"):
        build_trainer("dpo").train(base, TRIPLES, tmp_path / "x", SFTJobConfig(max_steps=1))


# -- conformance --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BUILTINS)
def test_builtin_trainer_conforms(kind, base, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trainer = build_trainer(kind)
    assert isinstance(trainer, Trainer) and trainer.kind == kind
    extra = {}
    if kind == "onpolicy":  # a teacher with the student's tokenizer and other weights
        from pedagogy.training.tiny import build_tiny_student

        extra = {"teacher_path": str(build_tiny_student(tmp_path / "teacher", seed=1))}
    config = trainer.config_class(
        max_steps=4, batch_size=4, logging_steps=1, warmup_steps=0, threads=1, seed=0, **extra
    )
    rows: list[dict] = []
    out = tmp_path / kind
    result = trainer.train(base, ITEMS[kind], out, config, progress=rows.append)

    assert isinstance(result, TrainResult) and result.kind == kind and result.out_path == out
    assert result.steps == 4 and not result.stopped_by_time
    assert result.n_examples == len(ITEMS[kind])
    assert result.seconds >= result.setup_seconds > 0
    losses = [r["loss"] for r in result.log_history if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert [r["step"] for r in rows if "loss" in r] == [1.0, 2.0, 3.0, 4.0]
    assert math.isfinite(result.train_loss) and result.final_loss == losses[-1]
    before, after = _weights(base), _weights(out)
    assert [k for k in before if (before[k] == after[k]).all()] == []  # every tensor moved
    AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).padding_side == "left"
    assert not (out / ".trainer").exists()


def test_trainers_import_trl_only_after_the_warm_up_finished(monkeypatch):
    """A resumed run starts `warm_up` (TRL imported in a thread) and then trains at once: a
    trainer that imported TRL beside that thread could see a half-initialised `trl`."""
    from pathlib import Path

    import pedagogy.training.trainers as T

    class Warming:
        joined = False

        def join(self):
            Warming.joined = True

    monkeypatch.setattr(T, "_warm_thread", Warming())
    assert T.trl_module().SFTTrainer is not None and Warming.joined
    # Every trainer module gets TRL through trl_module, never by its own import.
    for name in ("sft.py", "trajectory.py", "preference.py"):
        text = (Path(T.__file__).parent / name).read_text()
        assert "from trl import" not in text and "import trl" not in text, name
