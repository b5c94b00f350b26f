"""REDI and DPO on verified negatives: the loss by hand, pairing, and short real runs.

Offline: a tiny seeded student, no downloads. Jobs run with one thread: on two shared cores
under load, two threads were ~10x slower than one.
"""

from __future__ import annotations

import math

import pytest
import torch

from pedagogy.errors import ConfigError, TrainingError
from pedagogy.memory.records import DatasetItemRecord
from pedagogy.training.preference import (
    DPOJobConfig,
    PreferencePair,
    REDIJobConfig,
    completion_logprobs,
    preference_pairs,
    redi_loss,
    run_dpo,
    run_redi,
)


def _addition_pairs() -> list[PreferencePair]:
    """Every 1-digit a+b: the right worked answer, and one off by one."""
    out = []
    for a in range(10):
        for b in range(10):
            s, w = a + b, a + b + 1
            out.append(
                PreferencePair(f"{a}+{b}=", f"S:{a}+{b}={s}\nA:{s}", f"S:{a}+{b}={w}\nA:{w}")
            )
    return out


PAIRS = _addition_pairs()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from pedagogy.training.tiny import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("pref") / "base", seed=0)


def _margin(path) -> tuple[float, float]:
    """Mean log-prob of chosen and of rejected completions on the training prompts."""
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(path, threads=1)
    prompts = [p.prompt for p in PAIRS]
    chosen = backend.score(prompts, [p.chosen for p in PAIRS])
    rejected = backend.score(prompts, [p.rejected for p in PAIRS])
    return sum(chosen) / len(chosen), sum(rejected) / len(rejected)


# -- the loss -----------------------------------------------------------------------------------


def test_redi_loss_matches_hand_computation():
    # rows: (-2/2, -3/3), (-6/3, -8/4), (-1/1, no negative)
    loss = redi_loss(
        torch.tensor([-2.0, -6.0, -1.0]),
        torch.tensor([2, 3, 1]),
        torch.tensor([-3.0, -8.0, 0.0]),
        torch.tensor([3, 4, 0]),
        alpha=0.5,
    )
    # per row: 1 + 0.5*(-1) = 0.5; 2 + 0.5*(-2) = 1.0; 1 (SFT term only) -> mean 2.5/3
    assert loss.item() == pytest.approx(2.5 / 3)


def test_redi_loss_default_alpha_and_gradient_signs():
    pos = torch.tensor([-4.0], requires_grad=True)
    neg = torch.tensor([-4.0], requires_grad=True)
    loss = redi_loss(pos, torch.tensor([4]), neg, torch.tensor([2]))
    assert loss.item() == pytest.approx(1.0 + 0.8 * -2.0)
    loss.backward()
    # descending the loss raises log pi(y+) and lowers log pi(y-), each length-normalised
    assert pos.grad.item() == pytest.approx(-1 / 4)
    assert neg.grad.item() == pytest.approx(0.8 / 2)


def test_alpha_zero_is_length_normalised_nll_of_positives(base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(base)
    sample = PAIRS[:5]
    pos = completion_logprobs(model, tok, [p.prompt for p in sample], [p.chosen for p in sample])
    neg = completion_logprobs(model, tok, [p.prompt for p in sample], [p.rejected for p in sample])
    # a character tokenizer: one token per character, plus EOS
    assert [n for _, n in pos] == [len(p.chosen) + 1 for p in sample]
    loss = redi_loss(
        torch.tensor([s for s, _ in pos]),
        torch.tensor([n for _, n in pos]),
        torch.tensor([s for s, _ in neg]),
        torch.tensor([n for _, n in neg]),
        alpha=0.0,
    )
    # independently: HF's own mean token loss per row, prompt masked with -100, EOS appended
    nll = []
    for p in sample:
        prompt_ids = tok(p.prompt)["input_ids"]
        ids = tok(p.prompt + p.chosen)["input_ids"] + [tok.eos_token_id]
        labels = [-100] * len(prompt_ids) + ids[len(prompt_ids) :]
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        nll.append(out.loss.item())
    assert loss.item() == pytest.approx(sum(nll) / len(nll), rel=1e-4)


# -- pairing ------------------------------------------------------------------------------------


def _item(polarity: str, prompt: str, completion: str) -> DatasetItemRecord:
    return DatasetItemRecord("", "ep", "turn", polarity, prompt, completion)


def test_preference_pairs_pairs_only_prompts_with_both():
    items = [
        _item("positive", "1+1=", "A:2"),
        _item("negative", "1+1=", "A:3"),
        _item("negative", "1+1=", "A:3"),  # duplicate
        _item("positive", "1+1=", "S:1+1=2\nA:2"),
        _item("positive", "2+2=", "A:4"),  # no negative
        _item("negative", "3+3=", "A:7"),  # no positive
        _item("negative", "4+4=", "A:8"),  # judged both ways: not a negative
        _item("positive", "4+4=", "A:8"),
    ]
    pairs = preference_pairs(items)
    assert pairs == [
        ("1+1=", "A:2", "A:3"),
        ("1+1=", "S:1+1=2\nA:2", "A:3"),
    ]
    assert preference_pairs(list(reversed(items))) == [
        ("1+1=", "S:1+1=2\nA:2", "A:3"),
        ("1+1=", "A:2", "A:3"),
    ]
    mixed = preference_pairs(items, unpaired=True)
    assert mixed[2:] == [("2+2=", "A:4", None), ("4+4=", "A:8", None)]


# -- bad input ----------------------------------------------------------------------------------


def test_bad_inputs_name_the_value_and_the_fix(tmp_path):
    with pytest.raises(TrainingError, match="no pairs.*preference_pairs"):
        run_redi(tmp_path / "none", tmp_path / "out", [], REDIJobConfig(max_steps=1))
    with pytest.raises(TrainingError, match="no pairs"):
        run_dpo(tmp_path / "none", tmp_path / "out", [], DPOJobConfig(max_steps=1))
    with pytest.raises(ConfigError, match=r"alpha must be a number >= 0, got -0\.1"):
        REDIJobConfig(alpha=-0.1)
    with pytest.raises(ConfigError, match=r"got -1"):
        redi_loss(torch.zeros(1), torch.ones(1), torch.zeros(1), torch.ones(1), alpha=-1)
    with pytest.raises(ConfigError, match=r"beta must be > 0, got 0"):
        DPOJobConfig(beta=0)
    with pytest.raises(TrainingError, match="no rejected completion.*run_redi"):
        run_dpo(tmp_path / "none", tmp_path / "out", [("1+1=", "A:2")], DPOJobConfig())
    with pytest.raises(TrainingError, match="pair 0 is"):
        run_redi(tmp_path / "none", tmp_path / "out", ["1+1=A:2"], REDIJobConfig())
    with pytest.raises(TrainingError, match="polarity 'neutral'"):
        preference_pairs([_item("neutral", "1+1=", "A:2")])
    with pytest.raises(TrainingError, match="same shape|one shape"):
        redi_loss(torch.zeros(2), torch.ones(2), torch.zeros(3), torch.ones(3))
    with pytest.raises(TrainingError, match="is not a directory"):
        run_redi(tmp_path / "none", tmp_path / "out", PAIRS[:2], REDIJobConfig(max_steps=1))


# -- real runs ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_redi_pushes_rejected_below_chosen_and_saves(base, tmp_path):
    from pedagogy.backends.transformers import TransformersBackend

    chosen0, rejected0 = _margin(base)
    plain = [(p.prompt, p.chosen) for p in PAIRS[:10]]  # SFT-term-only rows share the batches
    rows: list[dict] = []
    result = run_redi(
        base,
        tmp_path / "redi",
        list(PAIRS) + plain,
        REDIJobConfig(max_steps=60, logging_steps=20, threads=1),
        progress=rows.append,
    )
    chosen1, rejected1 = _margin(result.out_path)
    assert result.steps == 60 and not result.stopped_by_time
    assert result.n_examples == 110
    assert [r["step"] for r in rows] == [20.0, 40.0, 60.0]
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert rows[-1]["logp_chosen"] > rows[-1]["logp_rejected"]
    # measured: margin 0.98 -> 11.0 nats, chosen -55.5 -> -22.1
    assert (chosen1 - rejected1) > (chosen0 - rejected0) + 3.0
    assert chosen1 > chosen0
    backend = TransformersBackend(result.out_path, threads=1)  # a loadable model directory
    assert backend.tokenizer.padding_side == "left"


def test_run_redi_stops_at_time_budget(base, tmp_path):
    result = run_redi(base, tmp_path / "t", PAIRS, REDIJobConfig(max_seconds=0.001, threads=1))
    assert result.stopped_by_time and result.steps == 1
    assert (tmp_path / "t" / "config.json").is_file()


@pytest.mark.slow
def test_run_dpo_increases_the_margin(base, tmp_path):
    chosen0, rejected0 = _margin(base)
    rows: list[dict] = []
    result = run_dpo(
        base,
        tmp_path / "dpo",
        PAIRS,
        DPOJobConfig(max_steps=20, warmup_steps=0, logging_steps=5, threads=1),
        progress=rows.append,
    )
    chosen1, rejected1 = _margin(result.out_path)
    assert result.steps == 20
    logged = [r for r in rows if "rewards/margins" in r]
    assert logged, rows
    # measured: margin 0.98 -> 1.48 nats after 20 steps (both log-probs fell ~10 nats: DPO only
    # sees the margin, and here the pair differs in two tokens of twelve)
    assert (chosen1 - rejected1) > (chosen0 - rejected0) + 0.25
    assert logged[-1]["rewards/margins"] > 0
    assert not (tmp_path / "dpo" / ".trainer").exists()


def test_run_redi_lora_then_full_from_the_adapter(base, tmp_path):
    adapter = run_redi(
        base, tmp_path / "lora", PAIRS[:20], REDIJobConfig(max_steps=2, lora=True, threads=1)
    ).out_path
    assert (adapter / "adapter_config.json").is_file()
    # a full job on an adapter base trains the merged weights (peft hands them back frozen)
    full = run_redi(adapter, tmp_path / "full", PAIRS[:20], REDIJobConfig(max_steps=2, threads=1))
    assert full.steps == 2 and (full.out_path / "model.safetensors").is_file()
