"""A replay actor sends what the recorded actor sent: its system message (an LLM's instructions,
a custom one, or none for a text model), whatever the replay backend declares."""

import pytest

from pedagogy.agents.acting import ACT_INSTRUCTIONS, Actor
from pedagogy.backends.base import WritesTextActions
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.domains.base import Problem
from pedagogy.graphs.replay import ReplayBackend, _replay_actor
from pedagogy.memory.records import TurnRecord
from pedagogy.tools.registry import build_tool


class ChatModel:
    """An LLM API stand-in: no `text_actions`, so an actor gives it instructions."""

    name, model = "chat", "chat-model"

    async def generate(self, requests):
        return []


@pytest.mark.parametrize(
    ("backend", "instructions"),
    [(ChatModel(), "auto"), (ScriptedBackend(), "auto"), (ChatModel(), "Answer tersely.")],
    ids=["llm", "text-model", "custom"],
)
def test_a_replay_actor_sends_the_recorded_system_message(backend, instructions):
    problem = Problem("toy", "add", 0, "3+4=", "7")
    recorded = Actor(backend, {"calculator": build_tool("calculator")}, instructions=instructions)
    request = recorded.request(problem, recorded.messages(problem, []), seed=0).to_record()
    detail = {"trajectory": "attempt", "step": 0, "ftp_mode": recorded.ftp_mode}
    turn = TurnRecord(0, "student", backend.name, backend.model, request, "A:7", detail=detail)

    actor = _replay_actor([turn], ReplayBackend([turn]), None, "student", 1)

    assert actor.instructions == recorded.instructions
    assert actor.messages(problem, []) == request["messages"]
    assert actor.request(problem, actor.messages(problem, []), seed=0).to_record() == request


def test_replay_is_a_text_model_and_an_llm_run_keeps_its_instructions():
    assert isinstance(ReplayBackend([]), WritesTextActions)
    assert Actor(ChatModel()).instructions == ACT_INSTRUCTIONS  # what an LLM run records
