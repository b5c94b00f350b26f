"""A local Hugging Face causal LM as a backend, batching concurrent requests into one generate.

Many episodes run concurrently, each asking the student one question at a time. One
`model.generate` over 200 prompts costs about as much as over 2 (MEASURED.md: 1,360 vs 74
problems/s on the 2M student), so requests are not run as they come: every `generate` call puts
its requests on an asyncio queue, and a single batching task drains the queue (up to
`max_batch_size`, after a short `batch_window_s` for stragglers) into one left-padded generate in
a worker thread. Requests that arrive while a batch runs form the next batch.

Prompts are rendered with the tokenizer's chat template when it has one; otherwise (the tiny
student) the user messages are joined by newlines, so the student sees exactly the compact problem
text, or explanation + problem on a re-attempt.

`reload(path, version_id)` swaps in a newly promoted model under a lock: a batch already running
finishes on the old weights and reports the old version; the next batch uses the new one.

Directories holding a peft adapter (`adapter_config.json`, as `pedagogy.training.sft` writes for
LoRA jobs) are loaded by merging the adapter into its base model.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pedagogy.backends.base import ChatRequest, Completion
from pedagogy.backends.decode import TextStops, decode, length_groups, plain_generation_config
from pedagogy.errors import ConfigError, ModelLoadError

__all__ = ["TransformersBackend", "load_model", "quiet_progress", "render_prompt"]

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence transformers' and datasets' progress bars (loading, saving, mapping) for a block.

    A round loads and saves models several times; their bars would clutter the live display.
    The previous setting is restored afterwards.
    """
    import datasets
    from transformers.utils import logging as hf_logging

    hf_on = hf_logging.is_progress_bar_enabled()
    ds_off = datasets.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hf_on:
            hf_logging.enable_progress_bar()
        if not ds_off:
            datasets.enable_progress_bars()


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> str:
    """The text the model sees: its chat template if it has one, else the plain-text rendering.

    Plain text (AGENT_SPEC): user contents as they are, assistant contents as they are (an acting
    agent's step already holds its text action), tool results as `O:<content>`, one per line;
    after a tool result a final newline, so the model writes its next step. System messages are
    left out, so user-only conversations read exactly the compact problem text.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
    lines = []
    for m in messages:
        role, content = m.get("role", "user"), m.get("content") or ""
        if role in ("user", "assistant"):
            lines.append(content)
        elif role == "tool":
            lines.append(f"O:{content}")
    text = "\n".join(lines)
    if messages and messages[-1].get("role") == "tool":
        text += "\n"
    return text


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1


def _check_local_dir(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(
            f"{str(path)!r} does not exist; pass a directory written by save_pretrained or a hub id"
        )
    if not path.is_dir():
        raise ModelLoadError(
            f"{str(path)!r} is a file, not a model directory; pass a directory written by "
            "save_pretrained or a hub id"
        )
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        return
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(
            f"{str(path)!r} is not a model directory (no config.json); pass a directory written "
            "by save_pretrained or a hub id"
        )
    try:
        json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"{str(path)!r} has a corrupt config.json ({e}); re-save the model with save_pretrained"
        ) from e
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise ModelLoadError(
            f"{str(path)!r} has no weights (none of {', '.join(_WEIGHT_FILES)}); re-save the "
            "model with save_pretrained"
        )


def load_model(name: str | Path, *, device: str = "cpu", dtype: Any = None):
    """(model, tokenizer) for a local directory, an adapter directory or a hub id, in eval mode."""
    name = str(name)
    local = _looks_local(name)
    path = Path(name).expanduser()
    if local:
        _check_local_dir(path)
    kwargs: dict[str, Any] = {"local_files_only": True} if local else {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        with quiet_progress():
            model, tokenizer = _from_pretrained(name, path, local, kwargs)
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - every loader failure becomes one actionable line
        where = f"{str(path)!r}" if local else f"hub id {name!r}"
        fix = (
            "pass a directory written by save_pretrained"
            if local
            else "hub ids need network access to the Hugging Face hub; pass a local directory"
        )
        raise ModelLoadError(
            f"cannot load {where}: {type(e).__name__}: {str(e).splitlines()[0][:200]}; {fix}"
        ) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device)
    model.eval()
    return model, tokenizer


def _from_pretrained(name: str, path: Path, local: bool, kwargs: dict[str, Any]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(path) if local else name
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if local and (path / "adapter_config.json").is_file():
        from peft import PeftModel

        adapter = json.loads((path / "adapter_config.json").read_text())
        base = AutoModelForCausalLM.from_pretrained(adapter["base_model_name_or_path"], **kwargs)
        return PeftModel.from_pretrained(base, str(path)).merge_and_unload(), tokenizer
    return AutoModelForCausalLM.from_pretrained(source, **kwargs), tokenizer


@dataclass
class _Pending:
    request: ChatRequest
    future: asyncio.Future


class TransformersBackend:
    """A local or hub causal LM; concurrent `generate` calls are batched into one forward."""

    name = "transformers"
    text_actions = True
    """It continues the rendered text: a first-thought prefix, no system message (`WritesTextActions`)."""

    def __init__(
        self,
        model: str | Path,
        *,
        version_id: str | None = None,
        max_batch_size: int = 256,
        batch_window_s: float = 0.002,
        threads: int | Literal["auto"] | None = "auto",
        device: str | None = None,
        dtype: Any = None,
    ):
        """
        Args:
            model: a directory written by save_pretrained (or a peft adapter directory), or a
                hub id (only where the hub is reachable).
            version_id: the pedagogy model-version id reported in every Completion.
            max_batch_size: most requests in one `model.generate` call.
            batch_window_s: how long the batcher waits for more requests after the first.
            threads: `torch.set_num_threads` for generation and scoring (and training in the
                same process): "auto" = the cores free now (`pedagogy.backends.cores`), so a
                busy machine is never oversubscribed; None: leave torch's setting as is.
            device: "cpu", "cuda", ...; default cuda when available, else cpu.
        """
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {max_batch_size}")
        import torch

        if threads == "auto":
            from pedagogy.backends.cores import free_cores

            threads = free_cores()
        elif threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(
                f"threads must be a positive integer, 'auto' or None, got {threads!r}; "
                "'auto' uses the cores free now"
            )
        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_s
        self.threads = threads
        self._lock = threading.Lock()
        self._model, self._tokenizer = load_model(model, device=self.device, dtype=dtype)
        self.model = str(model)
        self.version_id = version_id
        self.generate_calls = 0
        """How many underlying `model.generate` calls ran (batching makes this small)."""
        self.requests_served = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._batcher: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public API ----------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order; they share batches with concurrent callers."""
        if not requests:
            return []
        queue = self._ensure_batcher()
        loop = asyncio.get_running_loop()
        futures = []
        for request in requests:
            future = loop.create_future()
            queue.put_nowait(_Pending(request, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each continuation given its (already rendered) prompt.

        Synchronous and batched (`max_batch_size` rows per forward); from async code call it
        through `asyncio.to_thread` so the event loop keeps serving.
        """
        if len(prompts) != len(continuations):
            raise ConfigError(
                f"score got {len(prompts)} prompts but {len(continuations)} continuations; "
                "pass one continuation per prompt"
            )
        out: list[float] = []
        for start in range(0, len(prompts), self.max_batch_size):
            stop = start + self.max_batch_size
            out.extend(self._score_batch(prompts[start:stop], continuations[start:stop]))
        return out

    def continue_texts(self, prompts: Sequence[str], max_tokens: int = 64) -> list[str]:
        """The model's greedy continuation of each (already rendered) text, up to `max_tokens`
        tokens or its end-of-sequence token.

        Prompts are raw text, rendered as `score` takes them, so a caller can continue the
        middle of an answer (the learnability filter's rewrite). Synchronous and batched.
        """
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        out: list[str] = []
        for start in range(0, len(prompts), self.max_batch_size):
            chunk = list(prompts[start : start + self.max_batch_size])
            out.extend(row[0] for row in self._generate_rows(chunk, max_tokens)[0])
        return out

    def reload(self, path: str | Path, version_id: str | None = None) -> None:
        """Load a newly promoted model version; in-flight batches finish on the old one."""
        model, tokenizer = load_model(path, device=self.device, dtype=self.dtype)
        with self._lock:
            self._model, self._tokenizer = model, tokenizer
            self.model = str(path)
            self.version_id = version_id

    async def areload(self, path: str | Path, version_id: str | None = None) -> None:
        """`reload` in a worker thread, so the event loop keeps serving."""
        await asyncio.to_thread(self.reload, path, version_id)

    async def aclose(self) -> None:
        """Stop the batching task (pending requests get an error completion)."""
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except (asyncio.CancelledError, Exception):
                pass
            self._batcher = None
        if self._queue is not None:
            while not self._queue.empty():
                pending = self._queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_result(self._error(pending.request, "backend closed"))
        self._queue = None

    # -- batching ------------------------------------------------------------------------------

    def _ensure_batcher(self) -> asyncio.Queue[_Pending]:
        loop = asyncio.get_running_loop()
        queue = self._queue
        if queue is None or self._loop is not loop or self._batcher is None or self._batcher.done():
            # A new event loop (e.g. a second asyncio.run) needs its own queue and task.
            queue = asyncio.Queue()
            self._loop, self._queue = loop, queue
            self._batcher = loop.create_task(self._batch_forever(queue))
        return queue

    async def _batch_forever(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            if self.batch_window_s > 0:
                await asyncio.sleep(self.batch_window_s)
            else:
                await asyncio.sleep(0)
            while len(batch) < self.max_batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            live = [p for p in batch if not p.future.done()]
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self._run_batch, [p.request for p in live])
            except Exception as e:  # noqa: BLE001 - failures become error completions
                results = [self._error(p.request, f"{type(e).__name__}: {e}") for p in live]
            for pending, completion in zip(live, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(completion)

    def _error(self, request: ChatRequest, message: str) -> Completion:
        return Completion(
            text="", model=self.model, model_version=self.version_id, error=message[:500]
        )

    def _run_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        """One `model.generate` for the whole batch, greedy and sampled rows mixed; each row
        ends at its stop strings or after its first stop line (`ChatRequest.stop_lines`)."""
        with self._lock:
            texts = [render_prompt(self._tokenizer, r.messages) for r in requests]
        rows, latency, name, version = self._generate_rows(
            texts,
            max(r.max_tokens for r in requests),
            [r.max_tokens for r in requests],
            _RowSampler(requests, self.device)
            if any(r.temperature > 0 for r in requests)
            else None,
            stops=[(r.stop or [], r.stop_lines or []) for r in requests],
        )
        self.requests_served += len(requests)
        return [
            Completion(
                text=text,
                model=name,
                prompt_tokens=n_prompt,
                completion_tokens=n_new,
                latency_s=latency,
                model_version=version,
                finish_reason=finish,
            )
            for text, n_new, n_prompt, finish in rows
        ]

    def _generate_rows(
        self,
        texts: list[str],
        max_new_tokens: int,
        limits: list[int] | None = None,
        sampler: Any = None,
        stops: list[tuple[list[str], list[str]]] | None = None,
    ) -> tuple[list[tuple[str, int, int, str]], float, str, str | None]:
        """One `model.generate` over rendered texts (greedy; rows with temperature > 0 are drawn
        by `sampler`): per row (text, new tokens, prompt tokens, finish reason) cut at
        `limits[i]` new tokens, then the latency and the model name and version that produced
        them. `stops[i]`: row i's (stop strings, stop lines); the row ends where they say
        (`TextStops`; its text cut before a stop string). The finish reason is "stop" at the
        end-of-sequence token or a stop, else "length"."""
        import torch

        with self._lock:
            model, tokenizer = self._model, self._tokenizer
            version, name = self.version_id, self.model
            templated = bool(getattr(tokenizer, "chat_template", None))
            # Tokenized once; each decoded group (or the one `generate` batch) is padded alone.
            ids = tokenizer(texts, add_special_tokens=not templated)["input_ids"]

            def padded(rows: list[list[int]]) -> Any:
                return tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(self.device)

            row_limits = limits or [max_new_tokens] * len(texts)
            text_stops = TextStops(tokenizer, stops or [])
            t0 = time.perf_counter()
            if plain_generation_config(model):  # each row stops at its own end
                # Rows of similar prompt length decode together: a batch mixing short
                # attempts with long re-attempts (explanation + problem) would pad every
                # short prompt to the longest one and attend over that padding at each step.
                drawn = {i: (t, g) for i, t, g in sampler.rows} if sampler else {}
                new_tokens: list[list[int]] = [[] for _ in texts]
                for group in length_groups([len(row) for row in ids]):
                    sub = padded([ids[i] for i in group])

                    def ended(j: int, tokens: list[int], group: list[int] = group) -> bool:
                        return text_stops.ended(group[j], tokens)

                    rows = decode(
                        model,
                        sub["input_ids"],
                        sub["attention_mask"],
                        limits=[min(row_limits[i], max_new_tokens) for i in group],
                        eos_token_id=tokenizer.eos_token_id,
                        samplers={j: drawn[i] for j, i in enumerate(group) if i in drawn},
                        stop=ended if text_stops else None,
                    )
                    for i, row in zip(group, rows):
                        new_tokens[i] = row
            else:
                kwargs: dict[str, Any] = {
                    "max_new_tokens": max_new_tokens,
                    "do_sample": False,
                    "pad_token_id": tokenizer.pad_token_id,
                    "eos_token_id": tokenizer.eos_token_id,
                }
                if sampler is not None:
                    kwargs["logits_processor"] = [sampler]
                enc = padded(ids)
                with torch.inference_mode():
                    out = model.generate(**enc, **kwargs)
                prompt_len = enc["input_ids"].shape[1]
                new_tokens = [row[prompt_len:].tolist() for row in out]
            latency = time.perf_counter() - t0
            self.generate_calls += 1
        prompt_tokens = [len(row) for row in ids]
        rows = []
        for i, (row, n_prompt) in enumerate(zip(new_tokens, prompt_tokens)):
            new = row[: row_limits[i]]
            n_new, finish = len(new), "length"
            if tokenizer.eos_token_id in new:
                n_new, finish = new.index(tokenizer.eos_token_id) + 1, "stop"
            # Where `decode` stopped the row, or (`generate`) where it would have.
            n_new = text_stops.length(i, new[:n_new]) or n_new
            text, stopped = text_stops.text(i, new[:n_new])
            rows.append((text, n_new, int(n_prompt), "stop" if stopped else finish))
        return rows, latency, name, version

    # -- scoring -------------------------------------------------------------------------------

    def _score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        token_lp, rows, starts = self._continuation_logprobs(prompts, continuations)
        return [float(token_lp[i, starts[i] - 1 : len(r) - 1].sum()) for i, r in enumerate(rows)]

    def token_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[list[float]]:
        """The log-probability of each token of each continuation given its (already rendered)
        prompt: what `score` sums, token by token (a distillation teacher's per-token scores).

        Synchronous and batched (`max_batch_size` rows per forward), like `score`.
        """
        if len(prompts) != len(continuations):
            raise ConfigError(
                f"token_logprobs got {len(prompts)} prompts but {len(continuations)} "
                "continuations; pass one continuation per prompt"
            )
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.max_batch_size):
            stop = start + self.max_batch_size
            token_lp, rows, starts = self._continuation_logprobs(
                prompts[start:stop], continuations[start:stop]
            )
            out.extend(token_lp[i, starts[i] - 1 : len(r) - 1].tolist() for i, r in enumerate(rows))
        return out

    def _continuation_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> tuple[Any, list[list[int]], list[int]]:
        """One forward over prompt + continuation rows: the log-probability of every row's
        token given those before it, the rows' ids and where each continuation starts."""
        import torch

        with self._lock:
            model, tokenizer = self._model, self._tokenizer
            templated = bool(getattr(tokenizer, "chat_template", None))
            rows, starts = [], []
            for prompt, continuation in zip(prompts, continuations):
                p_ids = tokenizer(prompt, add_special_tokens=not templated)["input_ids"]
                full = tokenizer(prompt + continuation, add_special_tokens=not templated)[
                    "input_ids"
                ]
                rows.append(full)
                # Continuation tokens are those past the shared prefix (robust to merges).
                common = 0
                while common < min(len(p_ids), len(full)) and p_ids[common] == full[common]:
                    common += 1
                starts.append(max(common, 1))
            width = max(len(r) for r in rows)
            pad = tokenizer.pad_token_id
            # Right padding keeps positions 0..n-1 for every row without position_ids.
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
            mask = torch.tensor(
                [[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device
            )
            with torch.inference_mode():
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            target = ids[:, 1:]
            token_lp = logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return token_lp, rows, starts


class _RowSampler:
    """Samples rows with temperature > 0 from their own seeded generator; greedy rows untouched.

    `generate` then runs greedily over the batch: a sampled row's scores are set to keep only
    its drawn token. So a seeded request draws the same text whatever its batch mates are
    (HF's own sampling shares one RNG across the batch).
    """

    def __init__(self, requests: Sequence[ChatRequest], device: str):
        import random

        import torch

        self.rows = []
        for i, r in enumerate(requests):
            if r.temperature > 0:
                g = torch.Generator(device=device)
                g.manual_seed(r.seed if r.seed is not None else random.randrange(2**63))
                self.rows.append((i, float(r.temperature), g))

    def __call__(self, input_ids, scores):
        import torch

        for i, temperature, generator in self.rows:
            probs = torch.softmax(scores[i].float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)
            scores[i] = float("-inf")
            scores[i, token] = 0.0
        return scores
