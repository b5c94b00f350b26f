"""Training data from memory: verified teacher explanations and correct student attempts.

Each job trains on the newest examples *and* earlier ones: measured here, fine-tuning on new
levels alone erased old ones (.98 -> .07 held-out accuracy).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pedagogy.domains.base import Domain, Problem
from pedagogy.memory.records import DatasetItemRecord, EpisodeRecord


def _prompt_of(turn_request: dict) -> str:
    messages = turn_request.get("messages") or []
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def examples_from_episodes(
    episodes: Sequence[EpisodeRecord],
    problems: dict[str, Problem],
    domain: Domain,
    in_context: bool = False,
) -> list[DatasetItemRecord]:
    """Positive and negative examples an episode yields (job_id left empty).

    Positives: the teacher's explanation when the domain verifies it, and every correct student
    attempt (as the completion of the plain problem prompt). Negatives: wrong first attempts.
    With `in_context`, a verified explanation also completes the re-attempt prompt as the student
    saw it (explanation + problem): this teaches the student to read an explanation in context,
    which is what the utility policy, the style probe and the learnability filter score.
    """
    items: list[DatasetItemRecord] = []
    for ep in episodes:
        problem = problems.get(ep.problem_id)
        if problem is None:
            continue
        verdict_by_turn = {v.turn_id: v for v in ep.verdicts}
        reattempt = in_context and next(
            (
                t
                for t in ep.turns
                if t.agent == "student" and t.request.get("purpose") == "reattempt"
            ),
            None,
        )
        for turn in ep.turns:
            if turn.error or not turn.response.strip():
                continue
            if turn.agent == "teacher":
                if domain.verify(problem, turn.response).correct:
                    items.append(
                        DatasetItemRecord(
                            "", ep.id, turn.id, "positive", problem.prompt, turn.response
                        )
                    )
                    if reattempt:
                        items.append(
                            DatasetItemRecord(
                                "",
                                ep.id,
                                turn.id,
                                "positive",
                                _prompt_of(reattempt.request),
                                turn.response,
                            )
                        )
            elif turn.agent == "student":
                verdict = verdict_by_turn.get(turn.id)
                if verdict is None:
                    continue
                if verdict.correct:
                    items.append(
                        DatasetItemRecord(
                            "", ep.id, turn.id, "positive", problem.prompt, turn.response
                        )
                    )
                elif turn.request.get("purpose") == "attempt":
                    items.append(
                        DatasetItemRecord(
                            "", ep.id, turn.id, "negative", _prompt_of(turn.request), turn.response
                        )
                    )
    return items


def mix_examples(
    new: Sequence[DatasetItemRecord],
    earlier: Sequence[DatasetItemRecord],
    max_examples: int | None,
    rng: random.Random,
) -> list[DatasetItemRecord]:
    """All new examples plus earlier ones, deduplicated; capped with earlier data sampled.

    Under a cap, up to half goes to the newest round and the rest is sampled from earlier rounds.
    """
    seen: set[tuple[str, str]] = set()

    def dedupe(items: Sequence[DatasetItemRecord]) -> list[DatasetItemRecord]:
        out = []
        for it in items:
            key = (it.prompt, it.completion)
            if key not in seen:
                seen.add(key)
                out.append(it)
        return out

    new_u = dedupe(new)
    old_u = dedupe(earlier)
    if max_examples is None or len(new_u) + len(old_u) <= max_examples:
        return new_u + old_u
    n_new = min(len(new_u), max(max_examples // 2, max_examples - len(old_u)))
    chosen_new = rng.sample(new_u, n_new)
    chosen_old = rng.sample(old_u, min(len(old_u), max_examples - n_new))
    return chosen_new + chosen_old


def trajectory_examples(
    episodes: Sequence[EpisodeRecord], problems: dict[str, Problem]
) -> tuple[list[DatasetItemRecord], dict[tuple[str | None, str], list[tuple[str, bool]]]]:
    """Verified trajectories of acting episodes as training items and their segments.

    Kept: the student's first attempt when it was correct, and the teacher's demonstration when
    the domain verified its answer (`decisions["demonstration_correct"]`). A re-attempt is left
    out: it was written with the demonstration in context, which already teaches it. Each
    trajectory is trained as the student would meet it: the plain problem prompt (not masked
    differently from the student's own request), then the steps, the loss on the agent's own
    step texts only (`Trajectory.segments`). One item per trajectory: its first turn, the prompt,
    and the rest of the plain-text rendering as the completion (for lineage and export);
    the segments, keyed by (episode id, turn id), are what trajectory SFT trains on.
    """
    items: list[DatasetItemRecord] = []
    segments: dict[tuple[str | None, str], list[tuple[str, bool]]] = {}
    for ep in episodes:
        problem = problems.get(ep.problem_id)
        if problem is None:
            continue
        for trajectory in ep.trajectories():
            keep = (trajectory.kind == "attempt" and ep.correct_first) or (
                trajectory.kind == "demonstration"
                and bool(ep.decisions.get("demonstration_correct"))
            )
            if not keep or not trajectory.steps or trajectory.steps[-1].action != "answer":
                continue
            parts = [(problem.prompt, False), *trajectory.segments()[1:]]
            completion = "".join(text for text, _ in parts[1:])
            item = DatasetItemRecord(
                "", ep.id, trajectory.steps[0].turn.id, "positive", problem.prompt, completion
            )
            items.append(item)
            segments[(ep.id, item.turn_id)] = parts
    return items, segments
