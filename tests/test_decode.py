"""Decoding that stops each row at its own end writes what `model.generate` writes; a row with
text stop rules (stop strings, stop lines: an acting step's action line) ends there."""

from __future__ import annotations

import asyncio

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


def test_stop_index_ends_after_the_first_complete_stop_line_or_before_a_stop_string():
    from pedagogy.backends.decode import stop_index

    lines = ["C:", "A:"]
    assert stop_index("T:a\nC:calculator(1+2)\nT:b\nA:3\n", (), lines) == 22
    assert stop_index("T:a\nC:calculator(1+2", (), lines) is None  # the line is not done yet
    assert stop_index("T:a\n  A:3\nA:4\n", (), lines) == 10  # leading whitespace aside
    assert stop_index("T:a\rA:3\rjunk", (), lines) == 8  # any line break ends a line
    assert stop_index("T:C:\nO:1\nA:3\n", ["\nO:"], lines) == 4  # the stop string first
    assert stop_index("A:3\nO:1", ["\nO:"], lines) == 3  # whichever comes first
    assert stop_index("T:a\nT:b\n", ["\nO:"], lines) is None
    assert stop_index("A:3\n", (), ()) is None


@pytest.fixture(scope="module")
def acting(tmp_path_factory):
    """A tiny student that writes a thought, a calculator call, then lines no step reads."""
    from pedagogy.training.sft import SFTJobConfig, run_sft
    from pedagogy.training.tiny import build_tiny_student

    tmp = tmp_path_factory.mktemp("acting")
    base = build_tiny_student(tmp / "v0", seed=0)
    pairs = [
        (f"{a}+{b}=", f"T:add\nC:calculator({a}+{b})\nT:then\nA:{a + b}\n")
        for a in range(10)
        for b in range(10)
    ]
    run_sft(base, tmp / "v1", pairs, SFTJobConfig(max_steps=60, packing=True, seed=0))
    return tmp / "v1"


def test_a_row_with_stop_rules_ends_where_they_match(acting):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pedagogy.backends.decode import TextStops, decode

    model = AutoModelForCausalLM.from_pretrained(acting).eval()
    tok = AutoTokenizer.from_pretrained(acting)
    prompts = [f"{a}+{b}=" for a in range(10) for b in range(0, 10, 4)]
    enc = tok(prompts, return_tensors="pt", padding=True)
    rules = [([], ["C:", "A:"]), (["\n"], []), ([], []), (["\nO:"], ["A:"])] * len(prompts)
    stops = TextStops(tok, rules[: len(prompts)])
    limits = [40] * len(prompts)
    full = decode(
        model, enc["input_ids"], enc["attention_mask"], limits=limits, eos_token_id=tok.eos_token_id
    )
    got = decode(
        model,
        enc["input_ids"],
        enc["attention_mask"],
        limits=limits,
        eos_token_id=tok.eos_token_id,
        stop=stops.ended,
    )
    for i, (row, whole) in enumerate(zip(got, full)):
        n = stops.length(i, whole)
        assert row == whole[: n or len(whole)]  # the unstopped row, cut where its rule matched
    texts = [stops.text(i, row)[0] for i, row in enumerate(got)]
    assert sum(len(r) for r in got) < sum(len(r) for r in full)
    assert all(t.endswith(")\n") and "\nC:calculator(" in t for t in texts[0::4])
    assert all("\n" not in t for t in texts[1::4])  # a stop string is cut off


async def test_an_acting_step_ends_after_its_action_line(acting):
    """Steps of a text model end at the line break after their action line: fewer tokens, the
    same actions, observations and answers as steps decoded to max_tokens."""
    from pedagogy.agents.acting import Actor
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.domains.base import Problem
    from pedagogy.tools.registry import build_tool

    backend = TransformersBackend(acting, threads=1)
    tools = {"calculator": build_tool("calculator")}
    problems = [Problem("toy", "add", 0, f"{a}+{b}=", str(a + b)) for a in range(9) for b in (1, 5)]

    async def episodes(stop_after_action: bool) -> list:
        actor = Actor(backend, tools, max_steps=3, max_tokens=40)
        actor.stop_after_action = stop_after_action
        return await asyncio.gather(*[actor.run(p, seed=i) for i, p in enumerate(problems)])

    try:
        unstopped, stopped = await episodes(False), await episodes(True)
    finally:
        await backend.aclose()

    def parsed(runs: list) -> list:
        return [
            [
                (s.action.kind, s.action.text, s.action.arguments, s.action.answer, s.action.error)
                + (None if s.observation is None else s.observation.text,)
                for s in steps
            ]
            for steps in runs
        ]

    assert parsed(stopped) == parsed(unstopped)
    assert any(s.action.kind == "call" for steps in stopped for s in steps)
    ended = 0
    for steps in stopped:
        for s in steps:
            assert s.turn.request["stop_lines"] == ["C:", "A:"]
            if s.action.kind != "invalid":
                # The reply is the step up to its action line and that line's break, a
                # character a token (no EOS); or the step ran out of tokens in that line.
                assert s.turn.response.strip("\n") == s.action.text
                if s.turn.response.endswith("\n"):
                    assert s.turn.completion_tokens == len(s.turn.response)
                    assert s.turn.detail["finish_reason"] == "stop"
                    ended += 1
                else:
                    assert s.turn.completion_tokens == 40
    assert ended
    # Decoded to max_tokens, the same steps wrote on past their action line.
    assert any(
        s.turn.response.strip("\n") != s.action.text
        for steps in unstopped
        for s in steps
        if s.action.kind != "invalid"
    )
    tokens = [sum(s.turn.completion_tokens for s in steps) for steps in stopped]
    before = [sum(s.turn.completion_tokens for s in steps) for steps in unstopped]
    assert all(t <= b for t, b in zip(tokens, before)) and sum(tokens) < sum(before)
