"""Every call is a row: failed attempts, fallbacks, unknown costs and truncation, over real HTTP
to the shipped OpenAI-compatible server injecting faults, into a real SQLite file."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pedagogy.backends.base import ChatRequest
from pedagogy.backends.litellm import LiteLLMBackend
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.cli import app
from pedagogy.config import config_from_dict
from pedagogy.domains.arithmetic import worked_solution
from pedagogy.errors import BackendError, ConfigError
from pedagogy.memory.audit import verify_run
from pedagogy.memory.records import RunRecord
from pedagogy.memory.store import open_store
from pedagogy.testing_server import FAULT_KINDS, OpenAICompatServer


def ask(text: str = "hi", **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def backend_for(srv: OpenAICompatServer, **kw) -> LiteLLMBackend:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 2.0)
    return LiteLLMBackend("openai/local", api_base=srv.base_url, **kw)


def kind_of(error: str | None, status: int | None) -> str:
    """The injected fault a failed attempt's row describes."""
    if status == 429:
        return "rate_limit"
    if status == 503:
        return "outage"
    if status == 500:
        return "server_error"
    if error and error.startswith("empty content"):
        return "empty"
    if error and error.startswith("unreadable response"):
        return "malformed"
    if error and "Timeout" in error:
        return "timeout"
    return f"? {status} {error}"


# -- the server's faults and the backend's attempts ---------------------------------------------


async def test_each_fault_kind_is_a_failed_attempt_of_its_kind():
    with OpenAICompatServer(lambda body: "forty two") as srv:
        backend = backend_for(srv, timeout_s=0.5, max_retries=1)
        for kind in FAULT_KINDS:
            srv.inject_faults(1.0, [kind], hang_s=1.0, retry_after_s=0.05)
            [failed] = await backend.generate([ask()])
            assert failed.error and failed.error.endswith("(after 2 attempts)"), kind
            assert [kind_of(a.error, a.status) for a in failed.attempts] == [kind, kind]
            assert all("\n" not in a.error for a in failed.attempts)
        assert srv.faults == [k for k in FAULT_KINDS for _ in range(2)]
        assert srv.requests == []  # faulted requests are not served
        srv.inject_faults(0.0)
        [clean] = await backend.generate([ask()])
        assert clean.text == "forty two" and clean.attempts == []  # at once: no rows


async def test_failed_attempts_then_the_one_that_served_in_order():
    with OpenAICompatServer(lambda body: "forty two") as srv:
        backend = backend_for(srv, max_retries=4)
        srv.inject_faults(0.5, ["server_error"], seed=3)
        completions = await backend.generate([ask(f"q{i}") for i in range(12)])
        url = srv.base_url
    failed = [a for c in completions for a in c.attempts if a.error is not None]
    assert len(failed) == len(srv.faults) > 0 and set(srv.faults) == {"server_error"}
    for c in completions:
        if c.error is None and c.attempts:
            *bad, served = c.attempts
            assert [a.n for a in c.attempts] == list(range(len(c.attempts)))
            assert bad and all(a.status == 500 and a.error for a in bad)
            assert served.status == 200 and served.error is None
            assert served.endpoint == f"openai/local@{url}"
            assert all(a.latency_s > 0 and a.started_at for a in c.attempts)


async def test_retry_after_of_a_429_is_waited_for():
    with OpenAICompatServer(lambda body: "ok") as srv:
        backend = backend_for(srv, backoff_s=0.0, max_retries=1)
        srv.inject_faults(1.0, ["rate_limit"], retry_after_s=0.6)
        [failed] = await backend.generate([ask()])  # two 429s: one wait in between
        assert [a.retry_after_s for a in failed.attempts] == [0.6, 0.6]
        assert failed.latency_s >= 0.6
        # Capped at 0 s, the client does not wait the minute the server asks for: a margin that
        # no busy machine closes.
        srv.inject_faults(1.0, ["rate_limit"], retry_after_s=60)
        capped = backend_for(srv, backoff_s=0.0, max_retries=1, max_retry_after_s=0.0)
        [fast] = await capped.generate([ask()])
        assert [a.retry_after_s for a in fast.attempts] == [60, 60]
        assert fast.latency_s < 30 and len(fast.attempts) == 2


async def test_fallback_endpoint_serves_through_the_primary_outage():
    with (
        OpenAICompatServer(lambda b: "primary") as primary,
        OpenAICompatServer(lambda b: "backup", model="backup") as backup,
    ):
        backend = backend_for(
            primary,
            max_retries=1,
            fallbacks=[{"model": "openai/backup", "api_base": backup.base_url}],
        )
        primary.outage = True
        completions = await backend.generate([ask(f"q{i}") for i in range(5)])
        assert [c.text for c in completions] == ["backup"] * 5
        assert all(c.model == "openai/backup" for c in completions)
        for c in completions:
            assert [(a.endpoint, a.status) for a in c.attempts] == [
                (f"openai/local@{primary.base_url}", 503),
                (f"openai/local@{primary.base_url}", 503),
                (f"openai/backup@{backup.base_url}", 200),
            ]
        assert primary.faults == ["outage"] * 10 and len(backup.requests) == 5
        # the startup check falls back too, and says which endpoint answered
        check = await backend.check()
        assert check.attempts[-1].endpoint.startswith("openai/backup@")
        backup.outage = True
        with pytest.raises(BackendError, match="fallback"):
            await backend.check()


def test_endpoint_labels_never_hold_credentials():
    backend = LiteLLMBackend(
        "openai/m",
        api_base="https://user:secret@host:8000/v1?key=sk-123",
        fallbacks=[{"model": "openai/b"}],
    )
    assert [e.label for e in backend.endpoints] == ["openai/m@https://host:8000/v1", "openai/b"]


@pytest.mark.parametrize(
    ("fallbacks", "says"),
    [
        ("http://backup/v1", "options.fallbacks: expected a list"),
        ([{"modle": "openai/b"}], "options.fallbacks[0].modle: unknown key"),
        ([{"model": "openai/b", "api_key": "sk-x"}], "name its variable in api_key_env"),
        ([{"api_base": "http://b/v1"}], "options.fallbacks[0].model: a fallback needs"),
    ],
)
def test_bad_fallbacks_are_config_errors_naming_the_key(fallbacks, says):
    teacher = {"kind": "litellm", "model": "openai/a", "options": {"fallbacks": fallbacks}}
    with pytest.raises(ConfigError) as err:
        config_from_dict({"teacher": teacher})
    assert says in str(err.value) and "teacher" in str(err.value)
    with pytest.raises(BackendError, match=re.escape(says.split(":")[0])):
        LiteLLMBackend("openai/a", fallbacks=fallbacks)


# -- rows: stored with their turn, on the chain ------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pedagogy.db'}"
    return request.getfixturevalue("postgres_database")


def _run(store, run_id: str = "run1") -> None:
    store.create_run(RunRecord(run_id, "t", {}, 0))


async def test_attempts_are_rows_of_their_turn_on_the_hash_chain(db_url):
    from pedagogy.agents.roles import make_turn

    with OpenAICompatServer(lambda b: "ok") as srv:
        backend = backend_for(srv, max_retries=3)
        srv.fail_next(2, status=500)
        [c] = await backend.generate([ask()])
    assert [a.status for a in c.attempts] == [500, 500, 200]
    turn = make_turn("teacher", backend, ask(), c, 0)
    store = open_store(db_url)
    _run(store)
    store.record_turns("run1", [turn])
    rows = store.call_attempts("run1")
    assert [(r.turn_id, r.n, r.status) for r in rows] == [
        (turn.id, 0, 500),
        (turn.id, 1, 500),
        (turn.id, 2, 200),
    ]
    assert rows[0].endpoint == c.attempts[0].endpoint and rows[0].created_at is not None
    assert store.verify_chain("run1") == []
    report = verify_run(store, "run1")
    assert report.clean and report.tables["call_attempts"] == 3
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # someone hides a failure
        conn.execute(sa.text("UPDATE call_attempts SET status = 200 WHERE n = 0"))
    engine.dispose()
    report = verify_run(store, "run1")
    assert [(p.kind, p.table, p.row_id) for p in report.problems] == [
        ("edited", "call_attempts", f"{turn.id}:0")
    ]


def test_unknown_cost_is_none_and_counted_not_summed_as_zero(tmp_path):
    from pedagogy.memory.records import TurnRecord

    store = open_store(str(tmp_path / "p.db"))
    _run(store)
    store.record_turns(
        "run1",
        [
            TurnRecord(0, "teacher", "litellm", "m", {}, "x", cost=None, id="a"),
            TurnRecord(0, "teacher", "litellm", "m", {}, "x", cost=0.5, id="b"),
            TurnRecord(0, "generator", "litellm", "m", {}, "x", cost=None, id="c"),
        ],
    )
    totals = store.token_totals("run1")
    assert (totals["teacher"]["cost"], totals["teacher"]["cost_unknown"]) == (0.5, 1)
    assert (totals["generator"]["cost"], totals["generator"]["cost_unknown"]) == (None, 1)
    from pedagogy.cli import _cost_cell

    assert _cost_cell(None, 1, 1) == "unknown"
    assert _cost_cell(0.5, 1, 2) == "0.5000 + 1 unknown"
    assert _cost_cell(0.0, 0, 3) == "0.0000"


# -- truncation ----------------------------------------------------------------------------------


async def test_scripted_replies_are_cut_at_max_tokens_with_finish_reason_length(tmp_path):
    from pedagogy.agents.roles import make_turn

    backend = ScriptedBackend(lambda r: "one two  three\nfour five")
    short, whole = await backend.generate([ask(max_tokens=3), ask(max_tokens=5)])
    assert (short.text, short.finish_reason, short.completion_tokens) == (
        "one two  three",
        "length",
        3,
    )
    assert (whole.text, whole.finish_reason) == ("one two  three\nfour five", "stop")
    store = open_store(str(tmp_path / "p.db"))
    _run(store)
    turns = [make_turn("student", backend, ask(), c, 0) for c in (short, whole, short)]
    assert [t.detail["finish_reason"] for t in turns] == ["length", "stop", "length"]
    store.record_turns("run1", turns)
    assert store.finish_reasons("run1") == {"student": {"length": 2, "stop": 1}}


async def test_transformers_backend_says_length_when_max_tokens_was_hit(tmp_path):
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.training.tiny import build_tiny_student

    backend = TransformersBackend(build_tiny_student(tmp_path / "v0", seed=0))
    try:
        [cut] = await backend.generate([ask("1+2=", max_tokens=2)])
    finally:
        await backend.aclose()
    # cut after 2 new tokens, unless it ended (its end-of-sequence token) before
    assert cut.completion_tokens <= 2
    assert cut.finish_reason == ("stop" if cut.completion_tokens < 2 else "length")


# -- end to end: a run of the litellm teacher through faults -------------------------------------


def teacher(body: dict) -> str:
    text = body["messages"][-1]["content"]
    m = re.search(r"Problem: (\S+)=", text)
    return worked_solution(m.group(1)) if m else "ok"


def _faulty_run(quick_config, tmp_path, teacher_options: dict, api_base: str):
    cfg = quick_config(
        rounds=1,
        episodes={"per_round": 32, "write_batch": 16},
        student={"max_tokens": 6, "options": {"tiny": {}}},
        teacher={
            "kind": "litellm",
            "model": "openai/teacher",
            "api_base": api_base,
            "options": teacher_options,
        },
        evaluation={"heldout_per_arm": 8},
    )
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    (run,) = store.list_runs()
    return store, run


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:student.max_tokens is 6")  # cut on purpose: see `show`
def test_run_through_20_percent_faults_records_every_failed_attempt(quick_config, tmp_path):
    with OpenAICompatServer(teacher) as srv:
        srv.inject_faults(0.2, FAULT_KINDS, seed=7, hang_s=2.5, retry_after_s=0.05)
        options = {"max_retries": 5, "backoff_s": 0.01, "timeout_s": 1.5}
        store, run = _faulty_run(quick_config, tmp_path, options, srv.base_url)
        served = len(srv.requests)
        injected = list(srv.faults)
    rows = store.call_attempts(run.id)
    failed = [r for r in rows if r.error is not None]
    # every fault the server injected is exactly one failed-attempt row, of its kind
    assert len(injected) >= 5 and set(injected) == set(FAULT_KINDS)
    assert Counter(kind_of(r.error, r.status) for r in failed) == Counter(injected)
    # nothing lost: every served request is a turn, every call is a turn (one that failed all
    # its attempts too: faults cluster when few calls are in flight), every episode has its turns
    eps = store.episodes(run.id, with_turns=True)
    teacher_turns = [t for e in eps for t in e.turns if t.agent == "teacher"]
    outside = store.turns_outside_episodes(run.id)
    assert [t.request["purpose"] for t in outside] == ["check"] and len(eps) == 32
    calls = teacher_turns + outside
    assert served == sum(t.error is None for t in calls)
    assert all(e.turns and e.turns[0].agent == "student" for e in eps)
    assert sum(e.explained for e in eps) == len(teacher_turns)
    attempts_of = {t.id: [r for r in rows if r.turn_id == t.id] for t in calls}
    assert sum(map(len, attempts_of.values())) == len(rows)  # every row is a call's
    for t in calls:
        tried = attempts_of[t.id]
        assert [r.n for r in tried] == list(range(len(tried)))
        if t.error is not None:  # gave up: all 6 attempts failed, each a row
            assert len(tried) == 6 and all(r.error for r in tried)
        elif tried:  # served after failures: the last attempt is the one that served
            assert tried[-1].error is None and all(r.error for r in tried[:-1])
    assert sum(t.error is None for t in teacher_turns) >= 30
    assert store.verify_chain(run.id) == []
    # show: the attempts, and the student's answers cut at its 6 tokens
    out = CliRunner().invoke(app, ["show", run.id, "--db", store.url, "--json"])
    summary = json.loads(out.output)
    assert summary["call_attempts"]["failed"] == len(injected)
    student = [t for e in eps for t in e.turns if t.agent == "student"]
    cut = sum(t.detail.get("finish_reason") == "length" for t in student)
    assert cut > 0 and summary["truncated"]["student"] == cut
    shown = CliRunner().invoke(app, ["show", run.id, "--db", store.url])
    text = " ".join(shown.output.split())
    assert f"{sum(summary['truncated'].values())} turns were cut at max_tokens" in text
    assert f"call attempts: {len(injected)} failed" in text


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:student.max_tokens is 6")
def test_run_survives_the_primary_outage_on_its_fallback(quick_config, tmp_path):
    with OpenAICompatServer(teacher) as primary, OpenAICompatServer(teacher) as backup:
        served = Counter()

        def primary_then_down(body: dict) -> str:
            served["primary"] += 1
            if served["primary"] == 3:  # the check and two explanations, then an outage
                primary.outage = True
            return teacher(body)

        primary.responder = primary_then_down
        options = {
            "max_retries": 1,
            "backoff_s": 0.01,
            "fallbacks": [{"model": "openai/backup", "api_base": backup.base_url}],
        }
        store, run = _faulty_run(quick_config, tmp_path, options, primary.base_url)
        outage = len(primary.faults)
        urls = primary.base_url, backup.base_url
    eps = store.episodes(run.id, with_turns=True)
    teacher_turns = [t for e in eps for t in e.turns if t.agent == "teacher"]
    assert all(t.error is None for t in teacher_turns)
    # requests already past the door when the outage began were still served by the primary
    on_primary = served["primary"] - 1  # its check is outside the episodes
    on_backup = len(teacher_turns) - on_primary
    assert on_primary >= 2 and on_backup > 0
    assert Counter(t.model for t in teacher_turns) == {
        "openai/teacher": on_primary,
        "openai/backup": on_backup,
    }
    # each call in the outage: two failed attempts at the primary, then the backup served
    rows = store.call_attempts(run.id)
    assert outage == 2 * on_backup
    assert Counter((r.endpoint, r.status) for r in rows) == {
        (f"openai/teacher@{urls[0]}", 503): outage,
        (f"openai/backup@{urls[1]}", 200): on_backup,
    }
    assert store.verify_chain(run.id) == []
