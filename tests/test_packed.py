"""Packed SFT (a plain torch loop, no padding): the same loss and gradients as a padded batch,
the same token masking as TRL's path, and a job that trains, saves and reproduces itself."""

from __future__ import annotations

import math
import random

import pytest

from pedagogy.errors import TrainingError

EXAMPLES = [
    (f"{a}+{b}-{c}=", f"S:{a}+{b}={a + b};{a + b}-{c}={a + b - c}\nA:{a + b - c}")
    for a in range(0, 100, 7)
    for b in range(5)
    for c in range(3)
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from pedagogy.training.tiny import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("tiny") / "v0", seed=0)


def _model_and_tokenizer(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_encoding_masks_the_prompt_and_ends_with_eos(tiny_dir):
    from pedagogy.training.packed import encode_pairs

    _, tok = _model_and_tokenizer(tiny_dir)
    ((ids, n_prompt),) = encode_pairs(tok, [("1+2=", "S:1+2=3\nA:3")], 256)[0]
    assert ids[0] == tok.bos_token_id and n_prompt == 1 + len("1+2=")
    assert tok.decode(ids[n_prompt:-1]) == "S:1+2=3\nA:3" and ids[-1] == tok.eos_token_id
    _, cut = encode_pairs(tok, [("1+2=", "S:1+2=3\nA:3")], 5)
    assert cut == 1


def test_packed_batch_has_the_loss_and_gradients_of_the_padded_batch(tiny_dir):
    import torch

    from pedagogy.training.packed import encode_pairs, pack

    model, tok = _model_and_tokenizer(tiny_dir)
    pairs = random.Random(0).sample(EXAMPLES, 12)
    encoded, _ = encode_pairs(tok, pairs, 256)
    packed = pack(encoded, capacity=96, pad_id=tok.pad_token_id)
    assert packed.input_ids.shape[0] < len(pairs)  # several examples share a row
    assert packed.tokens == sum(len(ids) for ids, _ in encoded)

    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), tok.pad_token_id)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), -100)
    for r, (seq, n_prompt) in enumerate(encoded):
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
        labels[r, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])

    def loss_and_grads(**batch):
        model.zero_grad()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    padded_loss, padded_grads = loss_and_grads(input_ids=ids, attention_mask=mask, labels=labels)
    packed_loss, packed_grads = loss_and_grads(
        input_ids=packed.input_ids, position_ids=packed.position_ids, labels=packed.labels
    )
    assert packed_loss == pytest.approx(padded_loss, rel=1e-5)
    for a, b in zip(padded_grads, packed_grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    # Without the restarted positions the examples would see each other: the loss differs.
    model.zero_grad()
    leaked = model(input_ids=packed.input_ids, labels=packed.labels, use_cache=False).loss.item()
    assert leaked != pytest.approx(padded_loss, rel=1e-3)


@pytest.mark.slow
def test_packed_job_learns_saves_and_reproduces(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    from pedagogy.training.sft import SFTJobConfig, run_sft

    config = SFTJobConfig(max_steps=40, batch_size=16, logging_steps=10, seed=3, packing=True)
    rows = []
    first = run_sft(tiny_dir, tmp_path / "a", EXAMPLES, config, progress=rows.append)
    run_sft(tiny_dir, tmp_path / "b", EXAMPLES, config)
    assert first.steps == 40 and first.kind == "sft" and not first.stopped_by_time
    losses = [r["loss"] for r in first.log_history]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0]
    assert rows == first.log_history  # progress saw each row as it was logged
    assert 0.0 <= first.metrics["padding"] < 0.2
    before = load_file(str(tiny_dir / "model.safetensors"))
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(not (before[k] == a[k]).all() for k in before)  # every tensor moved
    assert all((a[k] == b[k]).all() for k in a)  # same seed, same weights
    _model_and_tokenizer(tmp_path / "a")  # a complete model folder


def test_packed_job_rejects_bad_examples(tiny_dir, tmp_path):
    from pedagogy.training.sft import SFTJobConfig, run_sft

    with pytest.raises(TrainingError, match="no examples"):
        run_sft(tiny_dir, tmp_path / "x", [], SFTJobConfig(max_steps=1, packing=True))


def test_rows_are_as_wide_as_the_longest_example_or_twice_the_model_never_the_context():
    from pedagogy.training.packed import row_width

    short = [([1] * 40, 1), ([1] * 90, 1)]
    long = [([1] * 300, 1), ([1] * 120, 1)]
    assert row_width(short, capacity=1024, floor=256) == 256
    assert row_width(long, capacity=1024, floor=256) == 300
    assert row_width(long, capacity=256, floor=256) == 256  # an overlong one gets its own row
    assert row_width(short, capacity=128, floor=256) == 128
