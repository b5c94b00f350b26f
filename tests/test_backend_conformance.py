"""The Backend conformance suite: every implementation answers a batch in order, with accounting."""

import pytest

from pedagogy.backends.base import Backend, ChatRequest, Completion
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.graphs.replay import ReplayBackend
from pedagogy.memory.records import TurnRecord
from pedagogy.testing import OpenAICompatServer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from pedagogy.training.tiny import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("tiny") / "m", seed=0)


@pytest.fixture(params=["scripted", "transformers", "litellm", "litellm-direct", "replay"])
def backend(request, tiny_dir):
    kind = request.param
    if kind == "scripted":
        yield ScriptedBackend(lambda r: "A:" + r.messages[-1]["content"])
    elif kind == "transformers":
        from pedagogy.backends.transformers import TransformersBackend

        yield TransformersBackend(str(tiny_dir), version_id="v0")
    elif kind.startswith("litellm"):
        from pedagogy.backends.litellm import LiteLLMBackend

        transport = "direct" if kind == "litellm-direct" else "litellm"
        with OpenAICompatServer() as server:
            yield LiteLLMBackend("openai/local", api_base=server.base_url, transport=transport)
    else:
        turns = [
            TurnRecord(i, "student", "x", "m", {}, f"A:{i}", completion_tokens=1) for i in range(3)
        ]
        yield ReplayBackend(turns)


def _requests(n):
    return [
        ChatRequest(messages=[{"role": "user", "content": f"{i}+1="}], max_tokens=8)
        for i in range(n)
    ]


async def test_backend_conformance(backend):
    assert isinstance(backend, Backend)
    assert isinstance(backend.name, str) and backend.name and isinstance(backend.model, str)
    out = await backend.generate(_requests(3))
    assert len(out) == 3 and all(isinstance(c, Completion) for c in out)
    assert all(c.error is None for c in out), [c.error for c in out]
    assert all(
        isinstance(c.text, str) and c.completion_tokens >= 0 and c.latency_s >= 0 for c in out
    )
    if backend.name in (
        "scripted",
        "litellm",
        "replay",
    ):  # answers that name their request: order kept
        assert [c.text.removeprefix("A:")[0] for c in out] == ["0", "1", "2"]
    assert await backend.generate([]) == []


async def test_transformers_batches_concurrent_requests(tiny_dir):
    import asyncio

    from pedagogy.backends.transformers import TransformersBackend

    b = TransformersBackend(str(tiny_dir))
    single = await asyncio.gather(*[b.generate([r]) for r in _requests(24)])
    assert len(single) == 24 and b.generate_calls < 24 / 4
