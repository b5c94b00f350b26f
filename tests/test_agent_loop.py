"""The acting loop end to end on a real SQLite file with the tiny student: the student acts with
the calculator, the scripted teacher demonstrates, trajectory SFT trains, evaluation acts with
real tools; then show, replay (no model call, no tool execution) and an export TRL trains on."""

import json
import math

import pytest
from typer.testing import CliRunner

from pedagogy.cli import app
from pedagogy.memory.store import open_store

pytestmark = pytest.mark.slow
runner = CliRunner()

# Renders an export's chat records as the tiny student reads them: tool calls in the text action
# format with their JSON arguments as stored (OpenAI shape: a JSON string), observations as O:
# lines; `generation` marks the assistant's own tokens for TRL's assistant_only_loss.
TEMPLATE = (
    "{{ bos_token }}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'user' -%}{{ m.content }}"
    "{%- elif m.role == 'tool' -%}O:{{ m.content }}{{ '\\n' }}"
    "{%- elif m.role == 'assistant' -%}{%- generation -%}{{ '\\n' }}"
    "{%- if m.tool_calls -%}"
    "{%- for call in m.tool_calls -%}"
    "C:{{ call.function.name }} {{ call.function.arguments }}{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- else -%}{{ m.content }}{{ eos_token }}{%- endif -%}"
    "{%- endgeneration -%}{%- endif -%}"
    "{%- endfor -%}"
)


def test_acting_loop_trains_on_trajectories_replays_and_exports(quick_config, tmp_path):
    cfg = quick_config(
        agent={"enabled": True, "max_steps": 4},
        episodes={"per_round": 32, "write_batch": 16, "explain_budget": 16},
        training={"max_steps": 30, "max_seconds": 600, "batch_size": 16},
        evaluation={"heldout_per_arm": 8},
    )
    db = str(tmp_path / "work" / "pedagogy.db")
    result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    store = open_store(db)
    (run,) = store.list_runs()
    assert run.status == "completed"

    # Every step is a row: a turn per model step, a tool_calls row per executed call.
    episodes = store.episodes(run.id, with_turns=True)
    assert len(episodes) == 64
    calls = [c for e in episodes for c in e.tool_calls]
    assert calls and {c.tool for c in calls} <= {"calculator"}
    demos = [t for e in episodes for t in e.trajectories() if t.kind == "demonstration"]
    assert demos and all(t.agent == "teacher" and t.steps[-1].action == "answer" for t in demos)
    assert sum(e.explained for e in episodes if e.round == 1) <= 16  # the budget binds
    assert store.verify_chain(run.id) == []

    # Trajectory SFT trained on verified trajectories, each traceable to its first turn.
    jobs = store.training_jobs(run.id)
    assert [(j.kind, j.status) for j in jobs] == [("trajectory_sft", "completed")] * 2
    assert jobs[0].metrics["steps"] == 30 and jobs[0].metrics["trained_tokens"] > 0
    turn_ids = {t.id for e in episodes for t in e.turns}
    for job in jobs:
        items = store.dataset_items(job.id)
        assert items and all(i.turn_id in turn_ids and i.polarity == "positive" for i in items)
        assert all("A:" in i.completion for i in items)

    # The acting student is evaluated acting: metrics per arm beside its accuracy.
    evaluations = store.evaluations(run.id)
    assert {e.round for e in evaluations} == {0, 1, 2}
    for e in evaluations:
        assert set(e.metrics) == {
            "mean_tool_calls",
            "invalid_action_rate",
            "mean_steps",
            "unanswered",
        }
        assert 0 <= e.metrics["invalid_action_rate"] <= 1 and 1 <= e.metrics["mean_steps"] <= 4

    # Replay: every observation served from storage, nothing executed, nothing called.
    replayed = runner.invoke(app, ["replay", run.id, "--db", db, "--json"])
    assert replayed.exit_code == 0, replayed.output
    report = json.loads(replayed.output)
    assert (report["model_calls"], report["tool_executions"], report["mismatches"]) == (0, 0, 0)
    assert report["episodes"] == 64

    shown = runner.invoke(
        app, ["show", run.id, "--db", db, "--episode", demos[0].steps[0].turn.episode_id]
    )
    assert shown.exit_code == 0, shown.output
    assert "calculator" in shown.output

    # The export is chat records with assistant tool_calls and tool messages that `datasets`
    # loads and TRL's SFT trains on.
    out = tmp_path / "export.jsonl"
    exported = runner.invoke(app, ["export", run.id, "--db", db, "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    acting = [r for r in records if any(m.get("tool_calls") for m in r["messages"])]
    assert acting, records[:2]
    roles = [m["role"] for m in acting[0]["messages"]]
    assert roles[0] == "user" and "tool" in roles and roles[-1] == "assistant"
    _train_a_few_trl_steps(acting, run, store, tmp_path)


def _train_a_few_trl_steps(records, run, store, tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    base = next(v.path for v in store.model_versions(run.id, "student") if v.number == 0)
    path = tmp_path / "acting.jsonl"
    path.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in records))
    data = datasets.load_dataset("json", data_files=str(path), split="train")
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = TEMPLATE
    args = SFTConfig(
        output_dir=str(tmp_path / "trl"), max_steps=3, per_device_train_batch_size=4,
        assistant_only_loss=True, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
        save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(base)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert any(not (a == b).all() for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("transport", ["litellm", "direct"])
def test_litellm_teacher_demonstrates_through_function_calling(quick_config, tmp_path, transport):
    """An API teacher acts through the OpenAI tools API over real HTTP: its tool calls run here,
    the demonstrations are stored with their tokens, and the run replays without a call. With
    either transport (`direct`: what a vLLM server as the teacher would use)."""
    from pedagogy.testing import OpenAICompatServer
    from pedagogy.testing_server import tool_agent

    with OpenAICompatServer(tool_agent("calculator")) as server:
        cfg = quick_config(
            rounds=1,
            agent={"enabled": True, "max_steps": 3},
            teacher={
                "kind": "litellm",
                "model": "hosted_vllm/teacher" if transport == "direct" else "openai/teacher",
                "api_base": server.base_url,
                "options": {"transport": transport},
            },
            episodes={"per_round": 16, "write_batch": 8},
            training={"max_steps": 5, "max_seconds": 600},
            evaluation={"heldout_per_arm": 4},
        )
        result = runner.invoke(app, ["run", "--config", str(cfg), "--quiet"])
        assert result.exit_code == 0, result.output
        with_tools = [r for r in server.requests if r.get("tools")]
    db = str(tmp_path / "work" / "pedagogy.db")
    store = open_store(db)
    (run,) = store.list_runs()
    episodes = store.episodes(run.id, with_turns=True)
    demos = [t for e in episodes for t in e.trajectories() if t.kind == "demonstration"]
    assert demos and len(with_tools) == sum(len(t.steps) for t in demos)
    for trajectory in demos:
        call, answer = trajectory.steps
        assert call.turn.backend == "litellm" and call.turn.prompt_tokens > 0
        assert call.turn.completion_tokens > 0 and answer.turn.prompt_tokens > 0
        assert call.tool_call.tool == "calculator" and call.tool_call.ok
        assert answer.action == "answer" and answer.turn.error is None
    explained = [e for e in episodes if e.explained]
    assert explained and all(e.decisions["demonstration_correct"] for e in explained)
    replayed = runner.invoke(app, ["replay", run.id, "--db", db, "--json"])
    assert replayed.exit_code == 0, replayed.output
    report = json.loads(replayed.output)
    assert (report["model_calls"], report["tool_executions"], report["mismatches"]) == (0, 0, 0)
