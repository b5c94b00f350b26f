"""A tiny OpenAI-compatible HTTP server for tests and examples.

Remote backends (litellm against a vLLM or Ollama server, or an API) are best tested over real
HTTP, not with a patched client: that exercises the URL, the headers, the JSON and the error
mapping. This server speaks just enough of the OpenAI API for that, from the standard library
only, on 127.0.0.1 with a free port, in a daemon thread:

    with OpenAICompatServer(lambda body: "42") as srv:
        backend = LiteLLMBackend("openai/local", api_base=srv.base_url)

It records every request body and its headers (and counts connections), can fail the next few requests with an HTTP error
(to test retries) and can delay every answer (to test bounded concurrency).

Fault injection (to test that every failed attempt is recorded): `inject_faults(rate, seed=...)`
fails that share of chat-completion requests, drawn from a seeded RNG, with one of FAULT_KINDS:

    timeout      hang `hang_s` before answering (set it past the client's timeout)
    rate_limit   HTTP 429 with a Retry-After header (`retry_after_s`)
    server_error HTTP 500
    malformed    HTTP 200 with a body that is not JSON
    empty        HTTP 200 with empty content and no tool calls

`outage = True` fails every chat-completion request (HTTP 503) until set back, for fallback tests.
`faults` lists what was injected, in order ("outage" for an outage's).

Tool calls (the OpenAI tools API): a responder may return a dict instead of text, an assistant
message `{"content": ..., "tool_calls": [...]}`. Each tool call is either the wire form or the
short form `{"name": "calculator", "arguments": {...}}`; arguments given as a string are sent
verbatim (so a test can send malformed JSON), ids default to `call_<n>`, and `finish_reason` is
"tool_calls" when there are calls (a "finish_reason" key overrides it). `tool_agent()` is a
ready-made responder that calls one tool with the problem, then answers with the observation:

    with OpenAICompatServer(tool_agent("calculator")) as srv: ...

Run on its own (`python -m pedagogy.testing_server --delay-s 0.2`) it serves the echo responder,
prints its base URL on one line and stops when its standard input closes: a throughput bench
runs it in another process so that the server's CPU is not counted as the client's.

Token counts in `usage` are whitespace-split words (prompt: over every message's content;
completion: over the answer and the tool calls' names and arguments), which is enough to check
that accounting flows through.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]
"""Maps a chat-completions request body to the assistant's text, or to an assistant message
dict (`content`, `tool_calls`, optionally `finish_reason`)."""


FAULT_KINDS = ("timeout", "rate_limit", "server_error", "malformed", "empty")
"""The faults `OpenAICompatServer.inject_faults` can inject."""


def echo_last_user(body: dict[str, Any]) -> str:
    """The default responder: the content of the last user message."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


_EXPRESSION = re.compile(r"([-+*/().\d\s]*\d[-+*/().\d\s]*)=?\s*\??\s*$")


def arithmetic_expression(problem: str) -> str:
    """The arithmetic expression at the end of a problem's last line (`Compute 4 + 3 =` -> `4+3`)."""
    lines = problem.strip().splitlines()
    match = _EXPRESSION.search(lines[-1] if lines else "")
    return "".join(match.group(1).split()) if match else problem.strip()


def tool_agent(
    tool: str = "calculator",
    *,
    argument: str = "expression",
    extract: Callable[[str], str] = arithmetic_expression,
) -> Responder:
    """A scripted acting agent: call `tool` once with the problem, then answer `A:<observation>`.

    Given the user's problem, it calls `tool` with `{argument: extract(problem)}`; once the last
    message is a tool result (or a user message `O:<observation>`, as text-only callers send
    it) it answers `A:<observation>`. A request that does not offer `tool` gets the call as a
    text action line, `C:<tool>(<raw>)`.
    """

    def respond(body: dict[str, Any]) -> str | dict[str, Any]:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        text = _text(last.get("content")).strip()
        if last.get("role") == "tool":
            return f"A:{text}"
        if last.get("role") == "user" and text.startswith("O:"):
            return f"A:{text.removeprefix('O:').strip()}"
        raw = extract(echo_last_user(body))
        offered = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
        if tool not in offered:
            return f"C:{tool}({raw})"
        return {"content": None, "tool_calls": [{"name": tool, "arguments": {argument: raw}}]}

    return respond


def _wire_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls in the OpenAI wire form, from the wire form or `{"name", "arguments", "id"}`."""
    out = []
    for i, call in enumerate(calls):
        function = call.get("function") or {
            "name": call.get("name", ""),
            "arguments": call.get("arguments", {}),
        }
        args = function.get("arguments", {})
        out.append(
            {
                "id": call.get("id") or f"call_{i}",
                "type": "function",
                "function": {
                    "name": function.get("name", ""),
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    return out


def _text(content: Any) -> str:
    # OpenAI content is a string or a list of parts like {"type": "text", "text": "..."}.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> int:
    return len(text.split())


class OpenAICompatServer:
    """Serves POST /v1/chat/completions and GET /v1/models on 127.0.0.1 (a free port, or
    `port`: a test can start a server where a client met a closed port)."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        model: str = "local",
        delay_s: float = 0.0,
        port: int = 0,
    ):
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s!r}")
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be 0 (any free port) or a port number, got {port!r}")
        self._port = port
        self.responder: Responder = responder or echo_last_user
        self.model = model
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        """Every chat-completions request body, in arrival order."""
        self.headers: list[dict[str, str]] = []
        """The headers of every request (any path), in arrival order."""
        self.max_in_flight = 0
        """The most chat-completion requests that were being answered at once."""
        self.connections = 0
        """TCP connections accepted so far (a client that reuses its connections opens few)."""
        self._in_flight = 0
        self._fail_left = 0
        self._fail_status = 500
        self.faults: list[str] = []
        """Every fault injected into a chat-completion request (a FAULT_KINDS name, or
        "outage"), in order."""
        self.outage = False
        """True: every chat-completion request fails with HTTP 503."""
        self._fault_rate = 0.0
        self._fault_kinds: tuple[str, ...] = FAULT_KINDS
        self._fault_rng = random.Random(0)
        self.hang_s = 2.0
        """How long a `timeout` fault hangs before answering."""
        self.retry_after_s = 0.1
        """The Retry-After a `rate_limit` fault sends (seconds; fractions are sent as they are)."""
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OpenAICompatServer:
        """Bind the port (a free one unless `port` was given) and serve in a daemon thread;
        returns self."""
        if self._httpd is not None:
            return self
        self._httpd = _QuietHTTPServer(("127.0.0.1", self._port), _make_handler(self))
        # A short poll interval makes stop() return in ~50 ms instead of the default 0.5 s.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-compat-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() or use it in a `with`")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as its base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- behaviour switches ----------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next n requests (any path) with HTTP `status` and an OpenAI error body."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        with self._lock:
            self._fail_left, self._fail_status = n, status

    def inject_faults(
        self,
        rate: float,
        kinds: tuple[str, ...] | list[str] = FAULT_KINDS,
        *,
        seed: int = 0,
        hang_s: float | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Fail a share `rate` of the chat-completion requests from now on, each with one of
        `kinds` (FAULT_KINDS), drawn from an RNG seeded with `seed`; rate 0 stops."""
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate!r}")
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown or not kinds:
            raise ValueError(
                f"unknown fault kind(s) {unknown!r}; choose from {', '.join(FAULT_KINDS)}"
            )
        with self._lock:
            self._fault_rate, self._fault_kinds = rate, tuple(kinds)
            self._fault_rng = random.Random(seed)
            if hang_s is not None:
                self.hang_s = hang_s
            if retry_after_s is not None:
                self.retry_after_s = retry_after_s

    # -- called from handler threads -------------------------------------------------------

    def _take_fault(self) -> str | None:
        """The fault to inject into this chat-completion request, if any (recorded)."""
        with self._lock:
            if self.outage:
                fault: str | None = "outage"
            elif self._fault_rate and self._fault_rng.random() < self._fault_rate:
                fault = self._fault_rng.choice(self._fault_kinds)
            else:
                return None
            self.faults.append(fault)
            return fault

    def _take_failure(self) -> int | None:
        with self._lock:
            if self._fail_left > 0:
                self._fail_left -= 1
                return self._fail_status
            return None

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            reply = self.responder(body)
        finally:
            with self._lock:
                self._in_flight -= 1
        return self._response(body, reply)

    def _response(self, body: dict[str, Any], reply: str | dict[str, Any]) -> dict[str, Any]:
        message, finish_reason = _assistant_message(reply)
        prompt_tokens = sum(_words(_text(m.get("content"))) for m in body.get("messages") or [])
        completion_tokens = _words(_text(message.get("content"))) + sum(
            _words(f"{c['function']['name']} {c['function']['arguments']}")
            for c in message.get("tool_calls") or []
        )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "pedagogy"}],
        }


def _assistant_message(reply: str | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The response's assistant message and finish_reason, from a responder's reply."""
    if isinstance(reply, str):
        return {"role": "assistant", "content": reply}, "stop"
    if not isinstance(reply, dict):
        raise TypeError(f"a responder returns text or an assistant message dict, got {reply!r}")
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
    calls = _wire_tool_calls(list(reply.get("tool_calls") or []))
    if calls:
        message["tool_calls"] = calls
    return message, reply.get("finish_reason") or ("tool_calls" if calls else "stop")


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping in `delay_s` must not block stop()
    # The default backlog of 5 drops connects when many clients open at once (a throughput
    # bench opening 64 connections), and a dropped SYN is retried only after a second.
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected in tests; anything else is printed.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": status}}


def _make_handler(server: OpenAICompatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive plus no Nagle: without both each response costs ~40 ms (MEASURED.md).
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server.connections += 1

        def _send(
            self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _fault(self, fault: str, raw: bytes) -> None:
            """Answer with `fault` (faulted requests are not in `requests`)."""
            if fault == "outage":
                self._send(503, _error_body(503, "injected outage"))
            elif fault == "rate_limit":
                self._send(
                    429,
                    _error_body(429, "injected rate limit"),
                    {"Retry-After": f"{server.retry_after_s:g}"},
                )
            elif fault == "server_error":
                self._send(500, _error_body(500, "injected server error"))
            elif fault == "malformed":
                data = b'{"id": "chatcmpl-broken", "choices": [{"message": '
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif fault == "empty":
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                self._send(200, server._response(body, ""))
            else:  # timeout: hang past the client's timeout, then hang up
                time.sleep(server.hang_s)
                self.close_connection = True

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _record_headers(self) -> None:
            with server._lock:
                server.headers.append({k.lower(): v for k, v in self.headers.items()})

        def do_GET(self) -> None:
            self._record_headers()
            status = server._take_failure()
            if status is not None:
                self._send(status, _error_body(status, "injected failure"))
            elif self.path.rstrip("/") == "/v1/models":
                self._send(200, server._models())
            else:
                self._send(404, _error_body(404, f"no route GET {self.path}"))

        def do_POST(self) -> None:
            raw = self._read_body()  # always drain, so the kept-alive connection stays usable
            self._record_headers()
            status = server._take_failure()
            if status is not None:
                self._send(status, _error_body(status, "injected failure"))
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, _error_body(404, f"no route POST {self.path}"))
                return
            fault = server._take_fault()
            if fault is not None:
                self._fault(fault, raw)
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as e:
                self._send(400, _error_body(400, f"request body is not JSON: {e}"))
                return
            try:
                payload = server._complete(body)
            except Exception as e:  # a responder bug must reach the client, not kill the thread
                self._send(500, _error_body(500, f"responder failed: {type(e).__name__}: {e}"))
                return
            self._send(200, payload)

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve `echo_last_user` (with `--delay-s`), print the base URL, stop when stdin closes."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pedagogy.testing_server")
    parser.add_argument("--delay-s", type=float, default=0.0, help="delay of every answer")
    args = parser.parse_args(argv)
    with OpenAICompatServer(delay_s=args.delay_s) as srv:
        print(srv.base_url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe (or exits)


if __name__ == "__main__":
    main()
