"""Live progress for long runs: a rich progress bar per phase plus one line per milestone."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class LiveProgress:
    """Turns loop events into a live display (or nothing, when disabled)."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: Any = None
        self.run_id: str | None = None
        """The run's id once it has one (its row is written): what a Ctrl-C resumes."""

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def _line(self, text: str) -> None:
        if self.enabled:
            self._progress.console.print(
                f"[dim]{time.perf_counter() - self.t0:6.1f}s[/] {text}", highlight=False
            )

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "run_started":
            self.run_id = data["run_id"]
            verb = "resuming" if data["resumed"] else "started"
            self._line(f"{verb} run [bold]{data['run_id']}[/] · db {data['db']}")
        elif kind == "teacher_training":
            if "examples" in data:
                self._line(
                    f"teacher model: training {data['steps']} steps on {data['examples']} worked "
                    "solutions (once; cached for later runs)"
                )
            else:
                self._line(
                    f"teacher model: step {data['step']}/{data['steps']} loss {data['loss']:.3f}"
                )
        elif kind == "teacher_ready":
            arms = " ".join(f"{a}={v:.2f}" for a, v in data["heldout"].items())
            how = "built" if data["built"] else "loaded"
            self._line(f"teacher model {how} ({data['key']}): held-out {arms}")
        elif kind == "evaluated":
            arms = " ".join(f"{a}={v:.2f}" for a, v in data["per_arm"].items())
            self._line(f"round {data['round']}: held-out mean {data['mean']:.2f} · {arms}")
        elif kind == "round_planned":
            if self.enabled:
                if self._task is not None:
                    self._progress.remove_task(self._task)
                self._task = self._progress.add_task(
                    f"round {data['round']} episodes", total=data["episodes"]
                )
        elif kind == "episodes_progress":
            if self.enabled and self._task is not None:
                self._progress.update(self._task, completed=data["done"], total=data["total"])
        elif kind == "curriculum_updated":
            res = " ".join(f"{a}:{c}/{n}" for a, (c, n) in sorted(data["results"].items()))
            self._line(f"round {data['round']}: first-try {res}")
        elif kind == "generator_trained":
            self._line(
                f"round {data['round']}: generator fine-tuned on {data['examples']} refinements, "
                f"{data['steps']} steps in {data['seconds']:.0f}s, loss {data['train_loss']:.3f}"
            )
        elif kind == "training_started":
            self._line(
                f"round {data['round']}: fine-tuning on {data['examples']} examples ({data['new']} new)"
            )
        elif kind == "training_finished":
            self._line(
                f"round {data['round']}: {data['steps']} steps in {data['seconds']:.0f}s, loss {data['train_loss']:.3f}"
            )
        elif kind == "promoted":
            self._line(
                f"round {data['round']}: promoted {data['version'][:12]} (mean {data['mean']:.2f})"
            )
        elif kind == "rolled_back":
            self._line(
                f"round {data['round']}: rolled back {data['version'][:12]} (mean {data['mean']:.2f} < {data['kept']:.2f})"
            )
        elif kind == "stopped_early":
            self._line(
                f"round {data['round']}: stopped early, {data['rounds_left']} round(s) left: "
                f"{data['reason']}"
            )
        elif kind == "training_skipped":
            self._line(f"round {data['round']}: no training ({data['new_examples']} new examples)")
