"""Fakes for testing your own graphs and domains, shipped with the library.

- `ScriptedBackend`: answers from a function or a list, records every request.
- `OpenAICompatServer`: a real OpenAI-compatible HTTP server on 127.0.0.1 for litellm tests.
"""

from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.testing_server import OpenAICompatServer

__all__ = ["OpenAICompatServer", "ScriptedBackend"]
