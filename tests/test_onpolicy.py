"""On-policy distillation (GKD): the loss is TRL's generalised JSD, its ends are the forward and
reverse KL, and a few on-policy steps move a tiny student toward a tiny different teacher.

Offline: seeded tiny Llamas built from a config, sharing the character tokenizer; no downloads.
"""

from __future__ import annotations

import pytest

from pedagogy.errors import ConfigError, TrainingError

torch = pytest.importorskip("torch")

PROMPTS = ["1+2=", "13+4=", "7-3=", "20+22="]


def _random_logits(seed: int = 0, shape=(3, 5, 11)):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(shape, generator=g) * 2
    teacher = torch.randn(shape, generator=g) * 2
    labels = torch.randint(0, shape[-1], shape[:2], generator=g)
    labels[0, :2] = -100
    labels[2, 3:] = -100
    return student, teacher, labels


def _trl_loss():
    import warnings

    try:
        with warnings.catch_warnings():  # TRL warns that its experimental APIs may move
            warnings.simplefilter("ignore")
            from trl.experimental.gkd import GKDTrainer
    except ImportError:
        try:
            from trl import GKDTrainer
        except ImportError:
            pytest.skip("TRL's GKDTrainer.generalized_jsd_loss cannot be imported in this TRL")
    return GKDTrainer.generalized_jsd_loss


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean"])
def test_loss_equals_trls(beta, temperature, reduction):
    from pedagogy.training.onpolicy import generalized_jsd_loss

    trl_loss = _trl_loss()
    student, teacher, labels = _random_logits()
    for lab in (labels, None):
        ours = generalized_jsd_loss(student, teacher, lab, beta, temperature, reduction)
        theirs = trl_loss(
            student, teacher, labels=lab, beta=beta, temperature=temperature, reduction=reduction
        )
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-5), (lab is None, ours, theirs)


def test_beta_ends_are_forward_and_reverse_kl_by_hand():
    from pedagogy.training.onpolicy import generalized_jsd_loss

    student, teacher, labels = _random_logits(1)
    t = 1.5
    p_s = torch.softmax(student / t, -1)
    p_t = torch.softmax(teacher / t, -1)
    keep = labels != -100
    forward = (p_t * (p_t.log() - p_s.log())).sum(-1)[keep].mean()
    reverse = (p_s * (p_s.log() - p_t.log())).sum(-1)[keep].mean()
    assert generalized_jsd_loss(student, teacher, labels, 0.0, t).item() == pytest.approx(
        forward.item(), rel=1e-5
    )
    assert generalized_jsd_loss(student, teacher, labels, 1.0, t).item() == pytest.approx(
        reverse.item(), rel=1e-5
    )
    # In between, the JSD with mixture weight beta: bounded by the KLs' mixture, never negative.
    m = 0.3 * p_t + 0.7 * p_s
    jsd = (0.3 * (p_t * (p_t / m).log()).sum(-1) + 0.7 * (p_s * (p_s / m).log()).sum(-1))[keep]
    assert generalized_jsd_loss(student, teacher, labels, 0.3, t).item() == pytest.approx(
        jsd.mean().item(), rel=1e-5
    )
    # Fully masked: zero, not nan.
    none = torch.full_like(labels, -100)
    assert generalized_jsd_loss(student, teacher, none, 0.5).item() == 0.0


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"beta": 1.5}, "beta must be a number in [0, 1], got 1.5"),
        ({"beta": -0.1}, "got -0.1"),
        ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
        ({"temperature": float("nan")}, "got nan"),
        ({"reduction": "avg"}, "got 'avg'"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(kwargs, named):
    from pedagogy.training.onpolicy import generalized_jsd_loss

    student, teacher, labels = _random_logits()
    with pytest.raises(ConfigError) as err:
        generalized_jsd_loss(student, teacher, labels, **kwargs)
    assert named in str(err.value)
    assert "use" in str(err.value) or "one of" in str(err.value)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny student and a tiny, differently sized and seeded teacher; one tokenizer."""
    from transformers import AutoTokenizer

    from pedagogy.training.tiny import TinyStudentConfig, build_tiny_student

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("onpolicy")
    small = TinyStudentConfig(hidden_size=64, num_heads=4, intermediate_size=256, max_position=64)
    student_dir = build_tiny_student(root / "student", small, seed=0)
    teacher_dir = build_tiny_student(
        root / "teacher", TinyStudentConfig(hidden_size=32, num_heads=2, max_position=64), seed=1
    )
    tok = AutoTokenizer.from_pretrained(student_dir)
    assert AutoTokenizer.from_pretrained(teacher_dir).get_vocab() == tok.get_vocab()
    return student_dir, teacher_dir, tok


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def test_sampling_is_seeded_and_masks_after_eos(models):
    from pedagogy.training.onpolicy import sample_completions

    student_dir, _, tok = models
    student = _load(student_dir)
    before = torch.random.get_rng_state()
    a = sample_completions(student, tok, PROMPTS, max_new_tokens=8, seed=3)
    b = sample_completions(student, tok, PROMPTS, max_new_tokens=8, seed=3)
    c = sample_completions(student, tok, PROMPTS, max_new_tokens=8, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is untouched
    assert a.completion_ids() == b.completion_ids() != c.completion_ids()
    for row in a.completion_ids():
        assert 1 <= len(row) <= 8
        assert tok.eos_token_id not in row[:-1]  # nothing is scored after the first EOS
    assert (a.labels[:, : a.prompt_width] == -100).all()


def test_steps_move_the_student_toward_the_teacher(models):
    """On a fixed sample, the JSD falls after on-policy steps. The first step trains on exactly
    that sample (same seed, same student), so for a small learning rate it must lower it; the
    later steps sample anew and keep lowering it in expectation."""
    from pedagogy.training.onpolicy import distillation_loss, onpolicy_step, sample_completions

    student_dir, teacher_dir, tok = models
    student, teacher = _load(student_dir), _load(teacher_dir)
    settings = {"beta": 0.5, "temperature": 1.0}
    fixed = sample_completions(student, tok, PROMPTS, max_new_tokens=12, seed=0)

    def jsd_on_fixed():
        with torch.no_grad():
            return distillation_loss(student, teacher, fixed, **settings)[0].item()

    start = jsd_on_fixed()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.0)
    first = onpolicy_step(
        student, teacher, tok, PROMPTS, opt, max_new_tokens=12, seed=0, **settings
    )
    assert first.on_policy and first.completion_ids == fixed.completion_ids()
    assert first.loss == pytest.approx(start, rel=1e-5)
    after_one = jsd_on_fixed()
    assert after_one < start
    for seed in range(1, 6):
        onpolicy_step(student, teacher, tok, PROMPTS, opt, max_new_tokens=12, seed=seed, **settings)
    assert jsd_on_fixed() < start

    # The record: text, ids and one teacher log-probability per scored token.
    assert first.tokens == sum(len(r) for r in first.completion_ids) > 0
    assert len(first.completions) == len(PROMPTS)
    assert [len(r) for r in first.teacher_logprobs] == [len(r) for r in first.completion_ids]
    assert all(v <= 0.0 for row in first.teacher_logprobs for v in row)
    # Each row scored alone, without padding, gives the same teacher log-probabilities: the
    # left padding and the position ids of the batch change nothing.
    for i, prompt in enumerate(PROMPTS):
        prompt_ids = tok(prompt)["input_ids"]
        ids = torch.tensor([prompt_ids + first.completion_ids[i]])
        with torch.no_grad():
            logp = torch.log_softmax(teacher(input_ids=ids).logits[0, :-1], -1)
        alone = logp[len(prompt_ids) - 1 :].gather(-1, ids[0, len(prompt_ids) :, None])
        assert alone.squeeze(-1).tolist() == pytest.approx(first.teacher_logprobs[i], abs=1e-4)


def test_loss_is_zero_when_student_is_teacher(models):
    from pedagogy.training.onpolicy import onpolicy_step

    student_dir, _, tok = models
    student, teacher = _load(student_dir), _load(student_dir)
    opt = torch.optim.SGD(student.parameters(), lr=1e-2)
    for beta in (0.0, 0.5, 1.0):
        step = onpolicy_step(
            student,
            teacher,
            tok,
            PROMPTS,
            opt,
            max_new_tokens=6,
            beta=beta,
            temperature=0.8,
            seed=1,
        )
        assert step.loss == pytest.approx(0.0, abs=1e-6)
    # A zero gradient moved nothing: the student still equals the teacher.
    for a, b in zip(student.parameters(), teacher.parameters()):
        assert torch.allclose(a, b)


def test_lmbda_picks_given_data_and_asks_for_it(models):
    from pedagogy.training.onpolicy import onpolicy_step

    student_dir, teacher_dir, tok = models
    student, teacher = _load(student_dir), _load(teacher_dir)
    opt = torch.optim.SGD(student.parameters(), lr=1e-3)
    given = ["3", "17", "4", "42"]
    step = onpolicy_step(
        student, teacher, tok, PROMPTS, opt, max_new_tokens=4, beta=0.5, temperature=1.0,
        lmbda=0.0, seed=0, completions=given,
    )  # fmt: skip
    assert not step.on_policy and step.completions == given
    assert step.tokens == sum(len(c) + 1 for c in given)  # characters + EOS
    with pytest.raises(TrainingError, match="pass completions="):
        onpolicy_step(
            student, teacher, tok, PROMPTS, opt, max_new_tokens=4, beta=0.5, temperature=1.0,
            lmbda=0.0, seed=0,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="lmbda must be a probability in"):
        onpolicy_step(
            student, teacher, tok, PROMPTS, opt, max_new_tokens=4, beta=0.5, temperature=1.0,
            lmbda=2.0, seed=0,
        )  # fmt: skip
