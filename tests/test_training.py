"""Fine-tuning (TRL SFT, full and LoRA) and held-out evaluation, on the tiny student, offline."""

from __future__ import annotations

import math
import random

import pytest

from pedagogy.backends.base import ChatRequest, Completion
from pedagogy.errors import ConfigError, TrainingError

EXAMPLES = [(f"{a}+{b}=", f"S:{a}+{b}={a + b}\nA:{a + b}") for a in range(10) for b in range(10)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from pedagogy.training.tiny import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("tiny") / "v0", seed=0)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# -- SFT -----------------------------------------------------------------------------------------


def test_trainer_masks_the_prompt_and_appends_eos(tiny_dir, tmp_path):
    from pedagogy.training.sft import SFTJobConfig, build_trainer

    trainer = build_trainer(tiny_dir, EXAMPLES[:4], SFTJobConfig(max_steps=1), out_path=tmp_path)
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    prompt, completion = EXAMPLES[0]
    n_prompt = 1 + len(prompt)  # <s> + one token per character
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert ids[0] == tok.bos_token_id
    assert labels[:n_prompt] == [-100] * n_prompt  # loss on the completion only
    n = n_prompt + len(completion) + 1
    assert labels[n_prompt:n] == ids[n_prompt:n]
    assert tok.decode(ids[n_prompt : n - 1]) == completion
    assert ids[n - 1] == tok.eos_token_id and labels[n - 1] == tok.eos_token_id  # learns to stop
    assert all(label == -100 for label in labels[n:])  # padding


@pytest.mark.slow
def test_sft_changes_parameters_reduces_loss_and_logs_it(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pedagogy.training.sft import SFTJobConfig, run_sft

    rows = []
    config = SFTJobConfig(max_steps=60, batch_size=16, logging_steps=10, seed=1)
    result = run_sft(tiny_dir, tmp_path / "v1", EXAMPLES, config, progress=rows.append)
    assert result.steps == 60 and result.out_path == tmp_path / "v1"
    assert result.seconds >= result.setup_seconds > 0 and not result.stopped_by_time
    losses = [r["loss"] for r in result.log_history if "loss" in r]
    assert len(losses) >= 5 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0]
    assert rows and rows[0]["step"] == 10  # progress saw the same rows as they were logged
    before, after = _weights(tiny_dir), _weights(tmp_path / "v1")
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert len(changed) == len(before)  # every tensor moved
    # The output directory is a complete model: weights and tokenizer, nothing else left over.
    AutoModelForCausalLM.from_pretrained(tmp_path / "v1")
    assert AutoTokenizer.from_pretrained(tmp_path / "v1").padding_side == "left"
    assert not (tmp_path / "v1" / ".trainer").exists()


@pytest.mark.slow
def test_time_budget_stops_training(tiny_dir, tmp_path):
    from pedagogy.training.sft import SFTJobConfig, run_sft

    result = run_sft(tiny_dir, tmp_path / "v1", EXAMPLES, SFTJobConfig(max_seconds=2.0))
    # No step-count or wall-time bound (both depend on the machine's load): the job ended by
    # its budget, long before its (unbounded) step count, and still saved the model.
    assert result.stopped_by_time and 1 <= result.steps < 10_000
    assert (tmp_path / "v1" / "model.safetensors").is_file()


@pytest.mark.slow
async def test_lora_saves_an_adapter_the_backend_loads(tiny_dir, tmp_path):
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.training.sft import SFTJobConfig, is_adapter_dir, run_sft

    config = SFTJobConfig(max_steps=10, batch_size=16, lora=True, lora_r=4)
    result = run_sft(tiny_dir, tmp_path / "lora", EXAMPLES, config)
    out = result.out_path
    assert is_adapter_dir(out) and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # an adapter, not a full model
    backend = TransformersBackend(out, version_id="lora-1")
    [completion] = await backend.generate([ChatRequest([{"role": "user", "content": "1+2="}])])
    assert completion.error is None and completion.model_version == "lora-1"
    # A LoRA job on an adapter directory continues that adapter; merge_lora saves a full model.
    merged = run_sft(
        out, tmp_path / "merged", EXAMPLES, SFTJobConfig(max_steps=5, lora=True, merge_lora=True)
    )
    assert (merged.out_path / "model.safetensors").is_file() and not is_adapter_dir(merged.out_path)
    await backend.aclose()


def test_sft_errors_name_the_problem(tiny_dir, tmp_path):
    from pedagogy.training.sft import SFTJobConfig, run_sft

    with pytest.raises(TrainingError, match="no examples"):
        run_sft(tiny_dir, tmp_path / "x", [])
    with pytest.raises(TrainingError, match="example 1"):
        run_sft(tiny_dir, tmp_path / "x", [("1+1=", "A:2"), ("1+1=",)])
    with pytest.raises(TrainingError, match="not a directory"):
        run_sft(tmp_path / "missing", tmp_path / "x", EXAMPLES)
    with pytest.raises(ConfigError, match="max_steps"):
        SFTJobConfig(max_steps=0)


# -- evaluation ----------------------------------------------------------------------------------


class SolvingBackend:
    """A fake student that answers with the domain's worked solution (or a wrong one)."""

    name, model = "fake", "fake"

    def __init__(self, domain, wrong_every: int = 0):
        self.domain, self.wrong_every, self.calls = domain, wrong_every, []

    async def generate(self, requests):
        self.calls.append(len(requests))
        out = []
        for i, r in enumerate(requests):
            text = self.domain.solve(r.problem)
            if self.wrong_every and i % self.wrong_every == 0:
                text = "A:-99999"
            out.append(Completion(text=text, model="fake"))
        return out


@pytest.fixture(scope="module")
def domain():
    from pedagogy.domains.reasoning_gym import ReasoningGymDomain

    levels = [{"num_terms": 0, "num_digits": 0}, {"num_terms": 1, "num_digits": 1}]
    return ReasoningGymDomain(skills=["chain_sum"], levels={"chain_sum": levels}, compact=True)


def test_build_heldout_is_fixed_distinct_and_sized_by_level(domain):
    from pedagogy.training.evaluate import build_heldout, heldout_prompts

    arms = [("chain_sum", 0), "chain_sum@1"]
    heldout = build_heldout(domain, arms, 80, seed=7)
    assert set(heldout) == {("chain_sum", 0), ("chain_sum", 1)}
    assert len(heldout[("chain_sum", 1)]) == 80
    # 1-digit a±b has ~200 distinct problems: a quarter is held out, the rest stays trainable.
    assert 20 <= len(heldout[("chain_sum", 0)]) <= 50
    prompts = [p.prompt for ps in heldout.values() for p in ps]
    assert len(prompts) == len(set(prompts)) == len(heldout_prompts(heldout))
    again = build_heldout(domain, arms, 80, seed=7)
    assert [p.prompt for p in again[("chain_sum", 1)]] == [
        p.prompt for p in heldout[("chain_sum", 1)]
    ]
    other = build_heldout(domain, arms, 80, seed=8)
    assert [p.prompt for p in other[("chain_sum", 1)]] != [
        p.prompt for p in heldout[("chain_sum", 1)]
    ]


async def test_evaluate_counts_correct_answers_in_one_batch(domain):
    from pedagogy.training.evaluate import accuracy, build_heldout, evaluate

    heldout = build_heldout(domain, [("chain_sum", 0), ("chain_sum", 1)], 30, seed=3)
    perfect = SolvingBackend(domain)
    results = await evaluate(perfect, domain, heldout)
    assert results == {arm: (len(ps), len(ps)) for arm, ps in heldout.items()}
    assert perfect.calls == [sum(len(ps) for ps in heldout.values())]  # one batched call

    flaky = SolvingBackend(domain, wrong_every=3)
    results = await evaluate(flaky, domain, heldout)
    total_correct = sum(c for c, _ in results.values())
    total = sum(n for _, n in results.values())
    assert total_correct == total - math.ceil(total / 3)
    assert all(0 < a < 1 for a in accuracy(results).values())


async def test_evaluate_counts_errors_as_wrong_and_sizes_max_tokens(domain):
    from pedagogy.training.evaluate import evaluate

    problem = domain.generate(random.Random(0), 1, "chain_sum", 1)[0]
    seen: list[ChatRequest] = []

    class Failing:
        name, model = "failing", "failing"

        async def generate(self, requests):
            seen.extend(requests)
            return [Completion(text="", model="x", error="boom") for _ in requests]

    results = await evaluate(Failing(), domain, {("chain_sum", 1): [problem]})
    assert results == {("chain_sum", 1): (0, 1)}
    solution = domain.solve(problem)
    assert (
        seen[0].max_tokens >= len(solution) + 1 and seen[0].messages[0]["content"] == problem.prompt
    )
    assert await evaluate(Failing(), domain, {("chain_sum", 0): []}) == {("chain_sum", 0): (0, 0)}


# -- training data from episodes -----------------------------------------------------------------


def test_in_context_examples_complete_the_reattempt_prompt(domain):
    """A verified explanation is a positive for the bare prompt and, with in_context, also for
    the re-attempt prompt the student saw; a wrong explanation is neither."""
    from pedagogy.memory.records import EpisodeRecord, TurnRecord, VerdictRecord
    from pedagogy.training.data import examples_from_episodes

    (problem,) = domain.generate(random.Random(3), 1, "chain_sum", 0)
    solution = domain.solve(problem)

    def episode(explanation: str) -> EpisodeRecord:
        def turn(tid, seq, agent, content, response, purpose):
            request = {"messages": [{"role": "user", "content": content}], "purpose": purpose}
            return TurnRecord(seq, agent, "scripted", "m", request, response, id=tid)

        return EpisodeRecord(
            id="e",
            run_id="r",
            round=1,
            index=0,
            problem_id=problem.id,
            arm=problem.arm,
            student_version=None,
            outcome="wrong",
            correct_final=False,
            explained=True,
            turns=[
                turn("a", 0, "student", problem.prompt, "A:-1", "attempt"),
                turn("x", 1, "teacher", "explain it", explanation, "explain"),
                turn("b", 2, "student", f"{explanation}\n{problem.prompt}", "A:-2", "reattempt"),
            ],
            verdicts=[VerdictRecord("a", False, 0.0, "-1"), VerdictRecord("b", False, 0.0, "-2")],
        )

    problems = {problem.id: problem}
    plain = examples_from_episodes([episode(solution)], problems, domain)
    assert sorted((i.turn_id, i.polarity, i.prompt) for i in plain) == [
        ("a", "negative", problem.prompt),
        ("x", "positive", problem.prompt),
    ]
    both = examples_from_episodes([episode(solution)], problems, domain, in_context=True)
    teacher = [i for i in both if i.turn_id == "x"]
    assert [i.prompt for i in teacher] == [problem.prompt, f"{solution}\n{problem.prompt}"]
    assert all(i.completion == solution and i.polarity == "positive" for i in teacher)
    wrong = examples_from_episodes(
        [episode("S:1+1=3\nA:-12345")], problems, domain, in_context=True
    )
    assert "x" not in {i.turn_id for i in wrong}
