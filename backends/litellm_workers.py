"""The litellm backend's calls spread over worker processes (`LiteLLMBackend(workers=N)`).

litellm spends milliseconds of Python per call (building its parameters, its response object,
its price), and one process runs Python on one core at a time: at a high concurrency against a
fast server, one event loop is busy with litellm while answers wait. With `workers=N` the
backend starts N child processes (`python -m pedagogy.backends.litellm_workers`), each running
the same backend (`workers=1`) in its own event loop, and hands them the requests; `generate`
is unchanged for its caller. The parent bounds the calls in flight to `max_concurrency` (one
semaphore over all workers) and gives each request to the worker with the fewest in flight; a
worker makes the call, with its retries and fallbacks, and sends back the `Completion` with its
tokens, latency (from the worker taking the request), cost, tool calls and attempts.

Requests and completions travel as pickles over two pipes per worker (not stdin/stdout, which
the worker keeps for anything litellm prints). A thread per worker reads its answers, so
neither side ever blocks on a full pipe. The workers start on the first `generate` (each
imports litellm, a few seconds) and stop when the backend is closed or garbage-collected, or
the parent exits (a worker stops when its pipe closes). A worker that dies fails the calls it
had in flight (as `Completion.error`) and is replaced; one that dies before answering anything
(a broken install) is not, and every call then fails with that error.

API keys: a worker reads `api_key_env` from its own environment, which is the parent's at the
moment the workers started; a key set later in the parent is not seen by running workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from pedagogy.backends.base import ChatRequest, Completion


class WorkerPool:
    """`workers` child processes that each run a `LiteLLMBackend` built from `config`."""

    def __init__(self, config: dict[str, Any], workers: int, max_concurrency: int, model: str):
        self.config = dict(config, workers=1)
        self.size = workers
        self.max_concurrency = max_concurrency
        self.model = model
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self._broken: str | None = None
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order, made by the workers."""
        self._start()
        semaphore = self._get_semaphore()
        return list(await asyncio.gather(*(self._one(r, semaphore) for r in requests)))

    async def _one(self, request: ChatRequest, semaphore: asyncio.Semaphore) -> Completion:
        async with semaphore:
            workers = self._live_workers()
            if not workers:
                return _error(self.model, self._broken or "no litellm worker process")
            worker = min(workers, key=lambda w: w.in_flight)
            future = asyncio.get_running_loop().create_future()
            try:
                worker.send(next(self._ids), dataclasses.replace(request, problem=None), future)
            except Exception as e:  # the worker is gone, or the request cannot be pickled
                return _error(self.model, f"could not hand the request to a litellm worker: {e}")
            return await future

    def _start(self) -> None:
        with self._lock:
            while len(self._workers) < self.size and not self._broken:
                try:
                    self._workers.append(_Worker(self.config, self.model))
                except OSError as e:
                    self._broken = f"could not start a litellm worker process ({e})"

    def _live_workers(self) -> list[_Worker]:
        """The running workers. One that exited after answering is replaced; one that exited
        before answering anything stops the pool (a broken install or config would otherwise
        start a process per request), and every later call gets its exit as the error."""
        with self._lock:
            for i, worker in enumerate(self._workers):
                if worker.alive:
                    continue
                worker.stop()
                if worker.answered:
                    self._workers[i] = _Worker(self.config, self.model)
                else:
                    self._broken = (
                        f"litellm worker process exited (code {worker.process.returncode}) "
                        "before answering; its error is on stderr"
                    )
            if self._broken:
                _stop_all(self._workers)
            return list(self._workers)

    def _get_semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._semaphore_loop = loop
        return self._semaphore

    @property
    def pids(self) -> list[int]:
        """The process ids of the running workers."""
        return [w.process.pid for w in self._workers if w.alive]

    def close(self) -> None:
        """Stop every worker (the backend starts new ones if it is used again)."""
        with self._lock:
            _stop_all(self._workers)


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()
    workers.clear()


class _Worker:
    """One child process, its two pipes and the thread that reads its answers."""

    def __init__(self, config: dict[str, Any], model: str):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pedagogy.backends.litellm_workers",
                    str(to_child_r),
                    str(from_child_w),
                ],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
            raise
        os.close(to_child_r)
        os.close(from_child_w)
        self._out = Connection(to_child_w, readable=False)
        self._in = Connection(from_child_r, writable=False)
        self._model = model
        self.answered = 0
        """How many completions it sent back."""
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Completion]]] = {}
        self._pending_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._out.send(config)
        self._reader = threading.Thread(
            target=self._read, name=f"litellm-worker-{self.process.pid}", daemon=True
        )
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and self._reader.is_alive()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def send(self, n: int, request: ChatRequest, future: asyncio.Future[Completion]) -> None:
        with self._pending_lock:
            self._pending[n] = (future.get_loop(), future)
        try:
            with self._send_lock:
                self._out.send((n, request))
        except BaseException:
            with self._pending_lock:
                self._pending.pop(n, None)
            raise

    def _read(self) -> None:
        closed = False
        while not closed:  # what has arrived, in one wake-up of each waiting event loop
            batch, closed = _receive(self._in)
            with self._pending_lock:
                entries = [(self._pending.pop(n, None), c) for n, c in batch]
            self.answered += len(batch)
            _resolve([(*e, c) for e, c in entries if e is not None])
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        error = _error(self._model, f"litellm worker process exited (code {code})")
        with self._pending_lock:
            pending, self._pending = list(self._pending.values()), {}
        _resolve([(loop, future, error) for loop, future in pending])

    def stop(self) -> None:
        """Close its pipe (the worker then exits), wait a moment, then kill it if need be."""
        try:
            self._out.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        try:
            self._in.close()
        except OSError:
            pass


def _error(model: str, message: str) -> Completion:
    return Completion(text="", model=model, error=message)


def _resolve(
    answers: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Completion], Completion]],
) -> None:
    """Set each future's completion, from another thread: one call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Completion], Completion]]]
    by_loop = {}
    for loop, future, completion in answers:
        by_loop.setdefault(loop, []).append((future, completion))
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_results, pairs)
        except RuntimeError:  # that event loop is closed: nobody waits for the answers
            pass


def _set_results(pairs: list[tuple[asyncio.Future[Completion], Completion]]) -> None:
    for future, completion in pairs:
        if not future.done():
            future.set_result(completion)


# -- the worker process ----------------------------------------------------------------------


def _receive(conn: Connection, most: int = 256) -> tuple[list[Any], bool]:
    """The next message and any more already waiting (up to `most`), and whether the pipe is
    closed (what came before the end is returned)."""
    batch: list[Any] = []
    try:
        batch.append(conn.recv())
        while len(batch) < most and conn.poll():
            batch.append(conn.recv())
    except (EOFError, OSError):
        return batch, True
    return batch, False


def _put_all(queue: asyncio.Queue[Any], items: list[Any]) -> None:
    for item in items:
        queue.put_nowait(item)


def _serve(read_fd: int, write_fd: int) -> None:
    """Read the backend's config, then requests; send back each completion when it is done."""
    from pedagogy.backends.litellm import LiteLLMBackend

    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    backend = LiteLLMBackend(**inbox.recv())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, ChatRequest] | None] = asyncio.Queue()

        def read() -> None:
            closed = False
            while not closed:  # what has arrived, in one wake-up of the event loop
                batch, closed = _receive(inbox)
                loop.call_soon_threadsafe(_put_all, queue, batch + [None] if closed else batch)

        threading.Thread(target=read, name="litellm-worker-inbox", daemon=True).start()
        tasks: set[asyncio.Task[None]] = set()

        async def answer(n: int, request: ChatRequest) -> None:
            try:
                [completion] = await backend.generate([request])
            except Exception as e:  # generate turns call failures into errors; this is a bug
                completion = Completion(
                    text="", model=backend.model, error=f"{type(e).__name__}: {e}"
                )
            try:
                outbox.send((n, completion))
            except OSError:  # the parent is gone; the inbox ends soon
                pass

        while (item := await queue.get()) is not None:
            task = asyncio.create_task(answer(*item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for task in list(tasks):
            task.cancel()

    asyncio.run(main())


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group: the parent handles it, and its
    # workers stop when it closes their pipes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(int(sys.argv[1]), int(sys.argv[2]))
