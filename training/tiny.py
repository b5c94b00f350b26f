"""The tiny-model factory: a student that starts knowing nothing, built offline in a second.

The embedded default run needs a student that learns visibly on two CPU cores within minutes and
never touches a model hub. A ~0.5M-parameter Llama with a character tokenizer does (MEASURED.md:
bigger students learn *slower* inside a five-minute budget). Both the tokenizer and the weights are
made here from a seed, then saved with `save_pretrained` so every other part of pedagogy loads the
student like any hub model (`AutoModelForCausalLM.from_pretrained(path)`).

The tokenizer is trained with the `tokenizers` library (a WordLevel model over single characters):
every printable ASCII character plus newline has its own id, so nothing maps to `<unk>`, and a
post-processor prepends `<s>` exactly as TRL and the backend both tokenize (`tokenizer(text)`).
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pedagogy.config import DEFAULT_CHAIN_SUM_LEVELS as _DEFAULT_CHAIN_SUM_LEVELS
from pedagogy.errors import ConfigError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
BASE_ALPHABET = string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", "")
"""Printable ASCII (letters, digits, punctuation, space, tab, newline)."""


def build_char_tokenizer(corpus: Iterable[str] | None = None):
    """A character-level `PreTrainedTokenizerFast`; `corpus` adds any characters beyond ASCII.

    Ids are deterministic: specials first, then characters in sorted order.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    chars = set(BASE_ALPHABET)
    for text in corpus or ():
        chars.update(text)
    alphabet = sorted(chars)

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    # Every character is its own pre-token, so the word-level model is a character model.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    trainer = trainers.WordLevelTrainer(vocab_size=len(alphabet) + 8, special_tokens=SPECIAL_TOKENS)
    # Train on the alphabet itself (one character per line) so every character gets an id in order.
    tok.train_from_iterator(alphabet, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A $B",
        special_tokens=[(BOS, tok.token_to_id(BOS))],
    )
    # The character model needs no decoder beyond concatenation.
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",  # must be a constructor argument to survive save_pretrained
        clean_up_tokenization_spaces=False,
    )


@dataclass
class TinyStudentConfig:
    """Architecture of the tiny student (a Llama)."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    """4x hidden, as in the MEASURED.md 0.5M model."""
    max_position: int = 256
    """Longest prompt+solution in tokens (RoPE: costs no parameters)."""
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; "
                "pick a hidden size that is a multiple of the head count"
            )
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(
                    f"TinyStudentConfig.{name} must be positive, got {getattr(self, name)}"
                )


def llama_config(config: TinyStudentConfig, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position,
        rope_theta=config.rope_theta,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build_tiny_student(
    path: str | Path, config: TinyStudentConfig | None = None, seed: int = 0
) -> Path:
    """Write a randomly initialised (seeded) tiny Llama and its tokenizer to `path`; return it."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    config = config or TinyStudentConfig()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_char_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(config, tokenizer))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    from pedagogy.backends.transformers import quiet_progress

    with quiet_progress():
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    (path / "pedagogy_tiny.json").write_text(_json({"seed": seed, **asdict(config)}))
    return path


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _json(obj: dict) -> str:
    import json

    return json.dumps(obj, indent=2) + "\n"


DEFAULT_STUDENT = TinyStudentConfig()

# The default run's chain_sum levels live with the config (the embedded default's domain).
DEFAULT_CHAIN_SUM_LEVELS = _DEFAULT_CHAIN_SUM_LEVELS


@dataclass
class _LoopRecipe:
    """Deprecated: the learning-curve bench's own settings (a time budget per round), never the
    default run's, which is its config (`pedagogy init` prints it). Use
    `pedagogy.benchmarks.learning_curve.CurveRecipe`."""

    rounds: int = 8
    seconds_per_round: float = 30.0
    problems_per_round: int = 1000
    replay: int = 4000
    learning_rate: float = 1e-3
    batch_size: int = 16
    warmup_steps: int = 20
    lr_scheduler: str = "constant_with_warmup"
    group_by_length: bool = False
    heldout_per_level: int = 100
    schedule: str = "uniform"
    range_mode: str = "inclusive"


def __getattr__(name: str) -> Any:
    """`TinyLoopDefaults` and `DEFAULT_LOOP`, kept for one release with a warning."""
    if name in ("TinyLoopDefaults", "DEFAULT_LOOP"):
        import warnings

        warnings.warn(
            f"pedagogy.training.tiny.{name} is deprecated: it was the learning-curve bench's "
            "settings, not the default run's; use pedagogy.benchmarks.learning_curve.CurveRecipe",
            DeprecationWarning,
            stacklevel=2,
        )
        return _LoopRecipe if name == "TinyLoopDefaults" else _LoopRecipe()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
