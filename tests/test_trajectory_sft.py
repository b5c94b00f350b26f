"""Trajectory SFT: rendering episodes as (text, trainable) segments, masking, truncation, and a
tiny student that learns to call a tool.

Offline: a seeded tiny student with a character tokenizer, so one character is one token.
"""

from __future__ import annotations

import json
import math
import random
import re

import pytest

from pedagogy.errors import TrainingError
from pedagogy.training.trajectory import (
    Segment,
    encode_trajectory,
    render_call,
    segments_from_messages,
    segments_from_steps,
    trajectory_rows,
)


def _call(call_id: str, name: str, arguments: dict) -> dict:
    """An OpenAI tool call, arguments in the wire form (a JSON string)."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def _addition(a: int, b: int) -> list[Segment]:
    s = a + b
    return segments_from_steps(f"Q:{a}+{b}", [(f"C:calculator({a}+{b})", str(s)), (f"A:{s}", None)])


@pytest.fixture(scope="module")
def tok():
    from pedagogy.training.tiny import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from pedagogy.training.tiny import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("trajectory") / "base", seed=0)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# -- rendering ----------------------------------------------------------------------------------


def test_render_call_uses_the_raw_form_for_one_string_argument():
    assert render_call("calculator", {"expression": "(3+4)*2"}) == "C:calculator((3+4)*2)"
    assert render_call("calculator", '{"expression": "3+4"}') == "C:calculator(3+4)"
    assert render_call("retrieve", {"query": "Zorv capital", "k": 2}) == (
        'C:retrieve {"query": "Zorv capital", "k": 2}'
    )
    assert render_call("python", {"code": "x = 1\nprint(x)"}) == (
        'C:python {"code": "x = 1\\nprint(x)"}'
    )
    # arguments that are no JSON object stay as the model wrote them
    assert render_call("calculator", "{not json") == "C:calculator({not json)"
    assert render_call("calculator", {"_raw": "3+"}) == "C:calculator(3+)"


def test_segments_from_openai_messages_with_tool_calls():
    messages = [
        {"role": "system", "content": "You may use tools."},
        {"role": "user", "content": "Q:capital of Zorv, times 2?"},
        {
            "role": "assistant",
            "content": "look it up\nT:then double",
            "tool_calls": [
                _call("a", "retrieve", {"query": "Zorv capital", "k": 1}),
                _call("b", "calculator", {"expression": "2*2"}),
            ],
        },
        # answered out of order: matched by tool_call_id
        {"role": "tool", "tool_call_id": "b", "content": "4"},
        {"role": "tool", "tool_call_id": "a", "content": "[f1] Zorv's capital is Ulm.\n[f2] ..."},
        {"role": "assistant", "content": "A:Ulm, 4"},
    ]
    assert segments_from_messages(messages) == [
        ("Q:capital of Zorv, times 2?", False),
        ('\nT:look it up\nT:then double\nC:retrieve {"query": "Zorv capital", "k": 1}\n', True),
        ("O:[f1] Zorv's capital is Ulm.\n[f2] ...\n", False),
        ("C:calculator(2*2)\n", True),
        ("O:4\n", False),
        ("A:Ulm, 4", True),
    ]


def test_a_text_students_steps_are_kept_as_written_and_match_what_the_backend_shows(tok):
    """For a text-only student the assistant content is the step; the text before each step
    is exactly what `render_prompt` shows the student, everything after it up to the step's
    end is trained."""
    from pedagogy.backends.transformers import render_prompt

    messages = [
        {"role": "user", "content": "Q:3+4"},
        {"role": "assistant", "content": "T:add\nC:calculator(3+4)"},
        {"role": "tool", "content": "7"},
        {"role": "assistant", "content": "A:7"},
    ]
    segments = segments_from_messages(messages)
    assert segments == segments_from_steps(
        "Q:3+4", [("T:add\nC:calculator(3+4)", "7"), ("A:7", None)]
    )
    steps = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    trained = [j for j, s in enumerate(segments) if s.trainable]
    for k, j in zip(steps, trained):
        context = render_prompt(tok, messages[:k])
        assert "".join(s.text for s in segments[:j]) == context
        # the separator the context lacks, the student writes
        assert segments[j].text.startswith("\n") != context.endswith("\n")


def test_the_export_of_a_stored_trajectory_renders_to_the_same_text():
    """A run's export (`Trajectory.messages()`: native tool calls, an invalid step's error as a
    user `O:` message) comes back as the stored trajectory's own text, and the same characters
    are trained but one: the newline after the prompt, which the student writes itself when
    the backend shows it the bare prompt (see the module docstring of training/trajectory.py)."""
    from pedagogy.memory.records import ToolCallRecord, Trajectory, TrajectoryStep

    calc = ToolCallRecord("t1", "turn1", 0, "calculator", "call_0", {"expression": "3+4"}, "7")
    look = ToolCallRecord("t2", "turn3", 2, "retrieve", "call_2", {"query": "Zorv", "k": 2}, "[f1]")
    invalid = "error: invalid action (no action line (C: or A:))"
    steps = [
        TrajectoryStep(None, "T:add\nC:calculator(3+4)", "call", tool_call=calc, observation="7"),
        TrajectoryStep(None, "T:hmm", "invalid", observation=invalid),
        TrajectoryStep(None, 'C:retrieve {"query": "Zorv", "k": 2}', "call", tool_call=look,
                       observation="[f1]"),
        TrajectoryStep(None, "A:7", "answer"),
    ]  # fmt: skip
    stored = Trajectory("attempt", "student", "Q:3+4", steps)
    ours = segments_from_messages(stored.messages())
    assert "".join(text for text, _ in ours) == stored.text()

    def trained(segments) -> str:
        return "".join(("1" if trainable else "0") * len(text) for text, trainable in segments)

    n = len("Q:3+4")
    mine, theirs = trained(ours), trained(stored.segments())
    assert mine[:n] + mine[n + 1 :] == theirs[:n] + theirs[n + 1 :]
    assert mine[n] == "1"


def test_segments_from_messages_refuses_nothing_to_render():
    with pytest.raises(TrainingError, match="no user, assistant or tool messages"):
        segments_from_messages([{"role": "system", "content": "hi"}])


# -- tokenising and masking ---------------------------------------------------------------------


def test_labels_are_masked_exactly_on_prompt_and_observations(tok):
    segments = segments_from_steps(
        "Q:12+30", [("T:use the tool\nC:calculator(12+30)", "42"), ("A:42", None)]
    )
    encoded = encode_trajectory(tok, segments)
    ids, labels = encoded.input_ids, encoded.labels
    text = "".join(s.text for s in segments)
    # segment by segment == the whole text at once (character tokenizer), BOS first, EOS last
    assert ids == tok(text)["input_ids"] + [tok.eos_token_id] and ids[0] == tok.bos_token_id
    trained = [i for i, label in zip(ids, labels) if label != -100]
    assert trained == [label for label in labels if label != -100]  # labels are the ids
    assert tok.decode(trained) == "\nT:use the tool\nC:calculator(12+30)\nA:42</s>"
    masked = [i for i, label in zip(ids, labels) if label == -100]
    assert tok.decode(masked) == "<s>Q:12+30O:42\n"
    assert encoded.cut == 0


def test_no_eos_unless_the_trajectory_ends_on_a_trained_step(tok):
    ended_on_observation = segments_from_steps("Q:1+1", [("C:calculator(1+1)", "2")])
    encoded = encode_trajectory(tok, ended_on_observation)
    assert tok.eos_token_id not in encoded.input_ids
    assert tok.decode(encoded.input_ids[-4:]) == "O:2\n"


def test_truncation_keeps_the_start_and_is_counted(tok):
    short = _addition(1, 2)  # 33 tokens with BOS and EOS
    long = segments_from_steps("Q:" + "9" * 40, [("A:9", None)])  # prompt alone fills 20
    both = [short, _addition(10, 20), long]
    with pytest.warns(UserWarning, match=r"3 of 3 trajectories were longer than 20 tokens"):
        prepared = trajectory_rows(tok, both, max_length=20)
    assert len(prepared.rows) == 2  # the long one kept no trained token
    assert prepared.metrics["truncated"] == 3 and prepared.metrics["dropped"] == 1
    first = prepared.rows[0]
    assert len(first["input_ids"]) == 20
    assert tok.decode(first["input_ids"]) == "<s>Q:1+2\nC:calculator("  # the start is kept
    prepared = trajectory_rows(tok, [short], max_length=256)
    assert prepared.metrics["truncated"] == 0 and len(prepared.rows[0]["input_ids"]) == 33
    with pytest.warns(UserWarning), pytest.raises(TrainingError, match="all 1 trajectories lost"):
        trajectory_rows(tok, [long], max_length=20)


def test_bad_trajectories_name_the_fix(tok):
    with pytest.raises(TrainingError, match="no trajectories"):
        trajectory_rows(tok, [], max_length=64)
    with pytest.raises(TrainingError, match=r"trajectory 1 is .*\(text, trainable\) segments"):
        trajectory_rows(tok, [_addition(1, 1), [("Q:1", "yes")]], max_length=64)
    with pytest.raises(TrainingError, match="at least one trainable text"):
        trajectory_rows(tok, [[("Q:1", False), ("O:2", False)]], max_length=64)


# -- training -----------------------------------------------------------------------------------


def test_trl_keeps_the_labels_and_a_few_steps_train_reproducibly(base, tok, tmp_path):
    from pedagogy.training.sft import SFTJobConfig
    from pedagogy.training.trajectory import build_trajectory_trainer, run_trajectory_sft

    items = [_addition(a, b) for a in range(5) for b in range(5)]
    # chat records are accepted too and render to the same segments
    items[0] = {
        "messages": [
            {"role": "user", "content": "Q:0+0"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [_call("c", "calculator", {"x": "0+0"})],
            },
            {"role": "tool", "tool_call_id": "c", "content": "0"},
            {"role": "assistant", "content": "A:0"},
        ]
    }
    config = SFTJobConfig(max_steps=3, batch_size=8, logging_steps=1, threads=1, seed=3)
    trainer = build_trajectory_trainer(base, items, config, out_path=tmp_path / "inspect")
    row = trainer.train_dataset[0]  # TRL shuffles nothing here: rows in order
    assert row["labels"] == encode_trajectory(tok, _addition(0, 0)).labels

    a = run_trajectory_sft(base, tmp_path / "a", items, config)
    b = run_trajectory_sft(base, tmp_path / "b", items, config)
    assert a.steps == 3 and a.kind == "trajectory_sft" and a.n_examples == 25
    assert a.metrics["truncated"] == 0 and a.metrics["trajectories"] == 25
    assert len([r for r in a.log_history if "loss" in r]) == 3 and math.isfinite(a.train_loss)
    before, after, again = _weights(base), _weights(a.out_path), _weights(b.out_path)
    assert all(not (before[k] == after[k]).all() for k in before)
    assert all((after[k] == again[k]).all() for k in after)  # same seed, same steps: same model


def test_packed_trajectories_have_the_loss_and_gradients_of_the_padded_batch(base, tok):
    """Labels given per token (prompt and observations -100) pack like prompt lengths do: the
    packed batch's loss and gradients are the padded batch's, as TRL computes it."""
    import torch
    from transformers import AutoModelForCausalLM

    from pedagogy.training.packed import pack

    model = AutoModelForCausalLM.from_pretrained(base)
    rows = trajectory_rows(tok, [_addition(a, 3 * a + 1) for a in range(9)], 256).rows
    examples = [(row["input_ids"], row["labels"]) for row in rows]
    packed = pack(examples, capacity=80, pad_id=tok.pad_token_id)
    assert packed.input_ids.shape[0] < len(examples)  # several trajectories share a row

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), tok.pad_token_id)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100)
    for r, (seq, lab) in enumerate(examples):
        ids[r, : len(seq)], mask[r, : len(seq)] = torch.tensor(seq), 1
        labels[r, : len(seq)] = torch.tensor(lab)

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


def test_an_example_whose_first_token_is_labelled_never_learns_it_from_its_neighbour(tok):
    """Nothing inside an example predicts its first token, so packing never trains it (a padded
    row of its own would not either), whatever its label says."""
    from pedagogy.training.packed import pack

    examples = [([5, 6, 7], [5, 6, 7]), ([8, 9], 0), ([10, 11, 12], [-100, 11, 12])]
    packed = pack(examples, capacity=16, pad_id=0)
    assert packed.input_ids.shape[0] == 1
    trained = packed.labels[0][packed.labels[0] != -100].tolist()
    assert sorted(trained) == [6, 7, 9, 11, 12]


def test_packed_trajectory_job_trains_reproducibly_without_trl(base, tmp_path, monkeypatch):
    from pedagogy.training import trajectory
    from pedagogy.training.sft import SFTJobConfig
    from pedagogy.training.trajectory import run_trajectory_sft

    def no_trl(*_args, **_kwargs):
        raise AssertionError("the packed path must not build TRL's trainer")

    monkeypatch.setattr(trajectory, "_prepare", no_trl)
    items = [_addition(a, b) for a in range(5) for b in range(5)]
    config = SFTJobConfig(
        max_steps=3, batch_size=8, logging_steps=1, threads=1, seed=3, packing=True
    )
    rows = []
    a = run_trajectory_sft(base, tmp_path / "a", items, config, progress=rows.append)
    b = run_trajectory_sft(base, tmp_path / "b", items, config)
    assert a.steps == 3 and a.kind == "trajectory_sft" and a.n_examples == 25
    assert a.metrics["trajectories"] == 25 and a.metrics["truncated"] == 0
    assert 0.0 <= a.metrics["padding"] < 0.3
    assert rows == a.log_history and len(rows) == 3 and math.isfinite(a.train_loss)
    before, after, again = _weights(base), _weights(a.out_path), _weights(b.out_path)
    assert all(not (before[k] == after[k]).all() for k in before)
    assert all((after[k] == again[k]).all() for k in after)  # same seed, same steps: same model


def test_trl_sft_trains_on_chat_records_with_tool_calls(base, tmp_path):
    """TRL's own path for a run's export: `Dataset.from_list` of messages with tool calls, a
    chat template that renders text actions (the tiny tokenizer has none) with `{% generation %}`
    marks for `assistant_only_loss`. It yields exactly the ids and labels of our segments."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    template = (
        "{{ bos_token }}"
        "{%- for m in messages -%}"
        "{%- if m.role == 'user' -%}{{ m.content }}"
        "{%- elif m.role == 'tool' -%}O:{{ m.content }}{{ '\\n' }}"
        "{%- elif m.role == 'assistant' -%}{%- generation -%}"
        "{%- if loop.index0 and messages[loop.index0 - 1].role == 'user' -%}{{ '\\n' }}{%- endif -%}"
        "{%- if m.tool_calls -%}"
        "{%- for line in (m.content or '').split('\\n') if line.strip() -%}"
        "{{ '' if line.startswith('T:') else 'T:' }}{{ line }}{{ '\\n' }}"
        "{%- endfor -%}"
        "{%- for call in m.tool_calls -%}"
        "{%- set args = call.function.arguments | dictsort | rejectattr(1, 'none') | list -%}"
        "{%- if args | length == 1 and args[0][1] is string -%}"
        "C:{{ call.function.name }}({{ args[0][1] }}){{ '\\n' }}"
        "{%- else -%}C:{{ call.function.name }} {{ dict(args) | tojson }}{{ '\\n' }}{%- endif -%}"
        "{%- endfor -%}"
        "{%- else -%}{{ m.content }}{{ eos_token }}{%- endif -%}"
        "{%- endgeneration -%}{%- endif -%}"
        "{%- endfor -%}"
    )

    def record(a: int, b: int) -> dict:
        call = {"id": "c1", "type": "function"}
        # arguments as a dict: Arrow keeps it a struct the template can read
        call["function"] = {"name": "calculator", "arguments": {"expression": f"{a}+{b}"}}
        return {
            "messages": [
                {"role": "user", "content": f"Q:{a}+{b}"},
                {"role": "assistant", "content": "add them", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": str(a + b)},
                {"role": "assistant", "content": f"A:{a + b}"},
            ]
        }

    records = [record(a, b) for a in range(4) for b in range(4)]
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = template
    args = SFTConfig(
        output_dir=str(tmp_path / "trl"), max_steps=3, per_device_train_batch_size=4,
        assistant_only_loss=True, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
        activation_checkpointing=False, save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(base),
        args=args,
        train_dataset=datasets.Dataset.from_list(records),
        processing_class=tok,
    )
    ours = encode_trajectory(tok, segments_from_messages(records[0]["messages"]))
    row = trainer.train_dataset[0]
    assert row["input_ids"] == ours.input_ids and row["labels"] == ours.labels
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


_CALL = re.compile(r"C:calculator\((\d+)\+(\d+)\)")


def _acts(model_dir, contexts: list[str]) -> list[str]:
    """The first line the student writes after each context (greedy), leading newlines off."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    batch = tok(contexts, return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=24, do_sample=False)
    texts = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return [t.lstrip("\n").split("\n")[0] for t in texts]


@pytest.mark.slow
def test_a_tiny_student_learns_to_call_the_calculator(base, tmp_path):
    """Trained on `Q:a+b -> C:calculator(a+b) -> O:s -> A:s`, it calls the tool well-formed on
    unseen numbers, from the context the backend shows it. Checked by parsing; trained in
    rounds of 150 steps until the check passes (measured: 300 steps, 48/50 exact calls)."""
    from pedagogy.backends.transformers import render_prompt
    from pedagogy.training.sft import SFTJobConfig
    from pedagogy.training.tiny import build_char_tokenizer
    from pedagogy.training.trajectory import run_trajectory_sft

    pairs = [(a, b) for a in range(100) for b in range(100)]
    random.Random(0).shuffle(pairs)
    unseen, seen = pairs[:40], pairs[40:2040]
    items = [_addition(a, b) for a, b in seen]
    tok = build_char_tokenizer()
    contexts = [render_prompt(tok, [{"role": "user", "content": f"Q:{a}+{b}"}]) for a, b in unseen]
    model, tries = base, 0
    while True:
        tries += 1
        config = SFTJobConfig(
            max_steps=150, batch_size=16, learning_rate=3e-3, threads=1, seed=tries, warmup_steps=20
        )
        model = run_trajectory_sft(model, tmp_path / f"v{tries}", items, config).out_path
        calls = [_CALL.fullmatch(line) for line in _acts(model, contexts)]
        well_formed = sum(m is not None for m in calls)
        exact = sum(
            m is not None and m.groups() == (str(a), str(b)) for m, (a, b) in zip(calls, unseen)
        )
        if well_formed >= 0.9 * len(unseen) and exact >= 0.6 * len(unseen):
            break
        assert tries < 4, f"after {tries * 150} steps: {well_formed} well-formed, {exact} exact"
    # and after the observation it answers with it
    answers = _acts(model, [f"Q:{a}+{b}\nC:calculator({a}+{b})\nO:{a + b}\n" for a, b in unseen])
    assert sum(ans == f"A:{a + b}" for ans, (a, b) in zip(answers, unseen)) >= 0.5 * len(unseen)
