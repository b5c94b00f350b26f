"""Decoding that stops each row at its own end writes what `model.generate` writes."""

from __future__ import annotations

import pytest

from pedagogy.backends.base import ChatRequest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny student trained a little, so its rows end at different lengths (EOS or limit)."""
    from pedagogy.training.sft import SFTJobConfig, run_sft
    from pedagogy.training.tiny import build_tiny_student

    tmp = tmp_path_factory.mktemp("decode")
    base = build_tiny_student(tmp / "v0", seed=0)
    pairs = [(f"{a}+{b}=", f"A:{a + b}" + "!" * (a % 4)) for a in range(10) for b in range(10)]
    run_sft(base, tmp / "v1", pairs, SFTJobConfig(max_steps=60, packing=True, seed=0))
    return tmp / "v1"


def _generate(model, tok, enc, max_new, sampler=None):
    import torch

    kwargs = {"logits_processor": [sampler]} if sampler else {}
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            **kwargs,
        )
    rows = []
    for row in out:
        new = row[enc["input_ids"].shape[1] :].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id) + 1]
        rows.append(new)
    return rows


def test_greedy_and_seeded_rows_match_generate(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pedagogy.backends.decode import decode, plain_generation_config
    from pedagogy.backends.transformers import _RowSampler

    model = AutoModelForCausalLM.from_pretrained(trained).eval()
    tok = AutoTokenizer.from_pretrained(trained)
    assert plain_generation_config(model)
    prompts = [f"{a}+{b}=" for a in range(10) for b in range(0, 10, 3)] + ["123456+7="]
    enc = tok(prompts, return_tensors="pt", padding=True)
    expected = _generate(model, tok, enc, 24)
    got = decode(
        model,
        enc["input_ids"],
        enc["attention_mask"],
        limits=[24] * len(prompts),
        eos_token_id=tok.eos_token_id,
    )
    assert got == expected
    assert len({len(r) for r in got}) > 1  # rows did end at different steps

    requests = [
        ChatRequest(
            messages=[{"role": "user", "content": p}], temperature=1.0 if i % 3 else 0.0, seed=i
        )
        for i, p in enumerate(prompts)
    ]
    sampled = _generate(model, tok, enc, 24, _RowSampler(requests, "cpu"))
    rows = _RowSampler(requests, "cpu").rows
    got = decode(
        model,
        enc["input_ids"],
        enc["attention_mask"],
        limits=[24] * len(prompts),
        eos_token_id=tok.eos_token_id,
        samplers={i: (t, g) for i, t, g in rows},
    )
    assert got == sampled


def test_row_limits_and_a_processing_config_fall_back(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pedagogy.backends.decode import decode, plain_generation_config

    model = AutoModelForCausalLM.from_pretrained(trained).eval()
    tok = AutoTokenizer.from_pretrained(trained)
    enc = tok(["1+2=", "9+9="], return_tensors="pt", padding=True)
    got = decode(
        model, enc["input_ids"], enc["attention_mask"], limits=[1, 3], eos_token_id=tok.eos_token_id
    )
    assert len(got[0]) == 1 and 1 <= len(got[1]) <= 3
    model.generation_config.repetition_penalty = 1.3
    assert not plain_generation_config(model)  # the backend keeps `generate` for this model
