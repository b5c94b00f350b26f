"""How the student changes: the tiny-model factory, fine-tuning, and held-out evaluation.

- `tiny`: a ~0.5M-parameter Llama with a locally trained character tokenizer, built from a seed
  (no hub), and the default run's chain_sum levels (`DEFAULT_CHAIN_SUM_LEVELS`).
- `sft`: `run_sft` on (prompt, completion) pairs: a plain torch loop on packed batches
  (`packed`), or TRL's SFTTrainer; full or LoRA.
- `pool`: the run's training examples, read round by round.
- `evaluate`: a fixed held-out set per arm and one batched generate to score a model version.
- `data`: training examples from stored episodes.
- `preference`: learning from mistakes: REDI (a plain torch loop) and DPO (TRL) on verified
  (correct, incorrect) pairs.
- `trajectory`: trajectory SFT for acting students: the loss on the agent's own steps only.
- `trainers`: the `Trainer` protocol and registry (sft, dpo, redi, trajectory_sft) and the job
  setup and ending they share.

Names are imported lazily: `import pedagogy.training` must not pull in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DEFAULT_CHAIN_SUM_LEVELS": "pedagogy.training.tiny",
    "DEFAULT_STUDENT": "pedagogy.training.tiny",
    "TinyStudentConfig": "pedagogy.training.tiny",
    "build_char_tokenizer": "pedagogy.training.tiny",
    "build_tiny_student": "pedagogy.training.tiny",
    "SFTJobConfig": "pedagogy.training.sft",
    "SFTResult": "pedagogy.training.sft",
    "run_sft": "pedagogy.training.sft",
    "warm_up": "pedagogy.training.sft",
    "PreferencePair": "pedagogy.training.preference",
    "preference_pairs": "pedagogy.training.preference",
    "redi_loss": "pedagogy.training.preference",
    "run_redi": "pedagogy.training.preference",
    "run_dpo": "pedagogy.training.preference",
    "build_heldout": "pedagogy.training.evaluate",
    "evaluate": "pedagogy.training.evaluate",
    "heldout_prompts": "pedagogy.training.evaluate",
    "evaluate_agent": "pedagogy.training.evaluate",
    "Trainer": "pedagogy.training.trainers",
    "TrainResult": "pedagogy.training.trainers",
    "build_trainer": "pedagogy.training.trainers",
    "register_trainer": "pedagogy.training.trainers",
    "known_trainers": "pedagogy.training.trainers",
    "TrajectorySFT": "pedagogy.training.trajectory",
    "run_trajectory_sft": "pedagogy.training.trajectory",
    "Segment": "pedagogy.training.trajectory",
    "segments_from_messages": "pedagogy.training.trajectory",
    "segments_from_steps": "pedagogy.training.trajectory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pedagogy.training' has no attribute {name!r}")
    return getattr(import_module(module), name)
