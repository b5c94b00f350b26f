"""The tiny-model factory and the transformers backend: offline, on real tiny models."""

from __future__ import annotations

import asyncio
import math
import string

import pytest

from pedagogy.backends.base import ChatRequest, Completion, ScoringBackend
from pedagogy.errors import ConfigError, ModelLoadError


def _req(text: str, max_tokens: int = 16, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=max_tokens, **kw)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from pedagogy.training.tiny import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("tiny") / "v0", seed=0)


@pytest.fixture(scope="module")
def trained_dir(reading_student):
    """The tiny student (seed 0, as `tiny_dir`) after 150 SFT steps on 'a+b=' ->
    'S:a+b=s\\nA:s', bare and with a worked example in context (conftest's `reading_student`,
    shared with other files: read-only)."""
    return reading_student


# -- tokenizer -----------------------------------------------------------------------------------


def test_char_tokenizer_round_trips_every_printable_character():
    from pedagogy.training.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    text = string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", "")
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1  # one id per character
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert [tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token] == [
        "<pad>",
        "<s>",
        "</s>",
        "<unk>",
    ]
    # The EOS string TRL appends to completions is one token, not five characters.
    assert tok("1+2=</s>")["input_ids"][-1] == tok.eos_token_id
    assert tok("é")["input_ids"][-1] == tok.unk_token_id  # outside the alphabet
    wider = build_char_tokenizer(["é"])  # a corpus adds its characters
    assert wider.decode(wider("é")["input_ids"], skip_special_tokens=True) == "é"


def test_tokenizer_save_reload_keeps_left_padding(tmp_path):
    from transformers import AutoTokenizer

    from pedagogy.training.tiny import build_char_tokenizer

    build_char_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.padding_side == "left"
    batch = tok(["1+2=", "10+20="], padding=True)
    assert batch["input_ids"][0][:2] == [tok.pad_token_id] * 2
    assert batch["attention_mask"][0] == [0, 0, 1, 1, 1, 1, 1]


# -- factory -------------------------------------------------------------------------------------


def test_factory_builds_a_seeded_reloadable_model(tiny_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pedagogy.training.tiny import build_tiny_student, count_parameters

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    assert model.config.model_type == "llama"
    assert 300_000 < count_parameters(model) < 1_000_000
    assert model.config.eos_token_id == tok.eos_token_id
    enc = tok(["1+2=", "33+4="], return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape == (2, enc["input_ids"].shape[1] + 5)

    same = AutoModelForCausalLM.from_pretrained(build_tiny_student(tmp_path / "a", seed=0))
    other = AutoModelForCausalLM.from_pretrained(build_tiny_student(tmp_path / "b", seed=1))
    w = model.model.embed_tokens.weight
    assert torch.equal(w, same.model.embed_tokens.weight)
    assert not torch.equal(w, other.model.embed_tokens.weight)


def test_tiny_config_rejects_bad_shapes():
    from pedagogy.training.tiny import TinyStudentConfig

    with pytest.raises(ConfigError, match="divisible"):
        TinyStudentConfig(hidden_size=130, num_heads=4)
    with pytest.raises(ConfigError, match="num_layers"):
        TinyStudentConfig(num_layers=0)


# -- rendering -----------------------------------------------------------------------------------


def test_render_prompt_raw_without_template_and_with_template(tiny_dir):
    from transformers import AutoTokenizer

    from pedagogy.backends.transformers import render_prompt

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    messages = [
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": "Hint: carry the 1."},
        {"role": "user", "content": "57+87="},
    ]
    assert render_prompt(tok, messages) == "Hint: carry the 1.\n57+87="
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}>"
    assert render_prompt(tok, messages[1:2]) == "[user]Hint: carry the 1.>"


# -- backend -------------------------------------------------------------------------------------


async def test_backend_batches_concurrent_callers_into_few_generate_calls(tiny_dir):
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(tiny_dir, version_id="v0")
    outs = await asyncio.gather(*[backend.generate([_req(f"{i}+1=")]) for i in range(20)])
    assert [len(o) for o in outs] == [1] * 20
    assert backend.generate_calls <= 2 and backend.requests_served == 20
    one = outs[0][0]
    assert isinstance(one, Completion) and one.error is None and one.model_version == "v0"
    assert one.prompt_tokens == len("0+1=") + 1  # characters + BOS
    assert 0 < one.completion_tokens <= 16 and one.latency_s > 0
    # A single call with a list also runs as one batch.
    before = backend.generate_calls
    await backend.generate([_req(f"{i}-1=") for i in range(30)])
    assert backend.generate_calls == before + 1
    await backend.aclose()


async def test_backend_keeps_the_event_loop_responsive(tiny_dir):
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(tiny_dir)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await backend.generate([_req(f"{i}+{i}=", max_tokens=48) for i in range(64)])
    task.cancel()
    assert ticks > 3  # the loop ran while the model generated in a worker thread
    await backend.aclose()


@pytest.mark.slow
async def test_batched_generation_matches_one_at_a_time(trained_dir):
    """Left padding must not change what a prompt produces (positions start at the first token)."""
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(trained_dir)
    prompts = ["3+4=", "9+9=", "1+2=", "7+5=", "0+0=", "6+8="]
    batched = await backend.generate([_req(p) for p in prompts])
    singles = [(await backend.generate([_req(p)]))[0] for p in prompts]
    assert [c.text for c in batched] == [c.text for c in singles]
    # It learned the format and to stop at EOS: no text past the answer line.
    assert all(c.text.startswith("S:") and "\nA:" in c.text for c in batched)
    assert all(c.completion_tokens < 16 for c in batched)
    await backend.aclose()


async def test_max_tokens_stop_and_seeded_sampling(tiny_dir):
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(tiny_dir)
    short, long = await backend.generate([_req("1+1=", max_tokens=3), _req("1+1=", max_tokens=12)])
    assert short.completion_tokens <= 3 and long.completion_tokens <= 12
    a, b, c, _ = await backend.generate(
        [
            _req("1+1=", temperature=1.0, seed=7),
            _req("1+1=", temperature=1.0, seed=7),
            _req("1+1=", temperature=1.0, seed=8),
            _req("1+1="),
        ]
    )
    again, _ = await backend.generate([_req("1+1=", temperature=1.0, seed=7), _req("2+2=")])
    # A seeded sampled row draws from its own generator: same text whatever its batch mates.
    assert a.text == b.text == again.text and a.error is None
    assert c.text != a.text  # another seed (a random tiny model samples near-uniformly)
    [greedy] = await backend.generate([_req("1+1=", max_tokens=12)])
    assert greedy.text == long.text
    cut = long.text[3:5]
    [stopped] = await backend.generate([_req("1+1=", max_tokens=12, stop=[cut])])
    assert stopped.text == long.text[: long.text.find(cut)]
    await backend.aclose()


def test_score_returns_finite_logprobs(tiny_dir):
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(tiny_dir)
    assert isinstance(backend, ScoringBackend)
    scores = backend.score(["1+2=", "12+30="], ["S:1+2=3\nA:3", "A:42"])
    assert len(scores) == 2 and all(math.isfinite(s) and s < 0 for s in scores)
    # Longer continuations get lower (more negative) sums under a near-uniform random model.
    assert scores[0] < scores[1]
    with pytest.raises(ConfigError):
        backend.score(["a"], [])


@pytest.mark.slow
def test_score_prefers_what_the_model_was_trained_on(trained_dir):
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(trained_dir)
    right, wrong = backend.score(["3+4=", "3+4="], ["S:3+4=7\nA:7", "S:3+4=9\nA:9"])
    assert math.isfinite(right) and right > wrong + 1.0


@pytest.mark.slow
async def test_reload_switches_version(tiny_dir, trained_dir):
    from pedagogy.backends.transformers import TransformersBackend

    backend = TransformersBackend(tiny_dir, version_id="v0")
    [before] = await backend.generate([_req("3+4=")])
    await backend.areload(trained_dir, "v1")
    [after] = await backend.generate([_req("3+4=")])
    assert (before.model_version, after.model_version) == ("v0", "v1")
    assert backend.model == str(trained_dir) and after.model == str(trained_dir)
    assert after.text != before.text
    await backend.aclose()


def test_load_errors_name_the_path_and_the_fix(tmp_path, tiny_dir):
    import shutil

    from pedagogy.backends.transformers import TransformersBackend

    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match="does not exist.*save_pretrained"):
        TransformersBackend(missing)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"is not a model directory \(no config.json\)"):
        TransformersBackend(empty)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_dir, corrupt)
    (corrupt / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupt config.json") as info:
        TransformersBackend(corrupt)
    assert str(corrupt) in str(info.value) and "\n" not in str(info.value)

    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights"):
        TransformersBackend(no_weights)
