"""Link hashes are a stored format: the same rows hash to the same links, whatever makes the
store faster. The expected values were computed by the store before its write path was
optimised; a change here breaks every stored chain."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pedagogy.memory.chain import ChainWriter
from pedagogy.memory.records import (
    CallAttemptRecord,
    DatasetItemRecord,
    DecisionRecord,
    ExplanationRecord,
    ToolCallRecord,
    TurnRecord,
    VerdictRecord,
)
from pedagogy.memory.store_episodes import _chain_rows
from pedagogy.memory.store_rows import _row

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

EXPECTED = {
    None: (
        [
            "a65a0931a8b539efdeeed834041f1e57d1fc402dc74a884a72358b853cb7f0e8",
            "289db9622763e34506bc2b3742829abf16a0acba373c9019903dbbe55eb3fc07",
        ],
        [
            "339301cbf5221a06899f901e17bca37a8997184ec0915fd187b3de62749e614f",
            "7ed046cc67db0d2842ea40873ce7658be4df0992a8daab0963599cc62ee620be",
        ],
        ["5d443bac156d9d63d4e5659a557dead7b9b3463f44c6d0af827d58447f963025"],
        "c3e8414c06cfa0972ac1ada56837bbf60831eceb957e44f8694154089d1209a5",
    ),
    b"secret": (
        [
            "657784281d37f9ba8a1cd6d55072c59973592a4a0c3119d34cd192e7960bdc98",
            "5e7ea55b3dc499fa94160d023dfacbb3127bbbd723ab3506c71eb463e4efa668",
        ],
        [
            "2ad8b8113b2303e346305521663e1120282384a0d54f753a64b930e975e2e00d",
            "3ee442b9c272e6deef5bbdfc9992ac2558347895a53822772056b63f92470435",
        ],
        ["4a5d3f07c54b78a16303084af64f452978c2fd4196044123b038728cf879fb28"],
        "46868789ac8081280ae7ca7319666e23873f185a179bfeec744ffee7ba2d1600",
    ),
}


@pytest.mark.parametrize("key", [None, b"secret"], ids=["sha256", "hmac"])
def test_the_same_rows_hash_to_the_same_links(key: bytes | None):
    turns = [
        TurnRecord(
            0,
            "student",
            "scripted",
            "m",
            {"messages": [{"role": "user", "content": "2+2= ü"}], "t": 0.5},
            "A:4",
            id="t0",
            seed=7,
            cost=1e-7,
            latency_s=0.25,
        ),
        TurnRecord(
            1,
            "teacher",
            "litellm",
            "gpt",
            {"b": None, "a": [1, 2.5]},
            "because\n",
            id="t1",
            model_version="v1",
            prompt_tokens=3,
            completion_tokens=4,
            detail={"shown": "x", "finish_reason": "length"},
            attempts=[
                CallAttemptRecord(0, "gpt@x", 429, "rate", 0.5, 2.0, T0),
                CallAttemptRecord(1, "gpt@x", None, None, 0.125, None, T0),
            ],
        ),
    ]
    calls = [
        ToolCallRecord(
            "c1",
            "t1",
            0,
            "python",
            "call_1",
            {"code": "print(1)"},
            "1\n",
            True,
            None,
            0.01,
            False,
            {"exit": 0},
        )
    ]
    chain = ChainWriter("run", "", 0, key)
    _chain_rows(chain, turns, "ep", calls)
    others = [
        (
            "verdicts",
            _row(VerdictRecord("t0", True, 1.0, "4", "programmatic", "ok"), episode_id="ep"),
        ),
        (
            "explanations",
            _row(ExplanationRecord("t1", "worked", 0.5, None), ("text",), episode_id="ep"),
        ),
        (
            "decisions",
            _row(
                DecisionRecord(
                    "run",
                    1,
                    "intervention",
                    "always",
                    "ep",
                    chosen=True,
                    value=0.5,
                    detail={"k": [1]},
                )
            ),
        ),
        (
            "dataset_items",
            _row(DatasetItemRecord("job", "ep", "t1", "positive", "p", "c"), ("id",), part=0),
        ),
    ]
    for table, row in others:
        row["id"] = 1
        chain.link(table, row)
    turn_hashes, attempt_hashes, call_hashes, last = EXPECTED[key]
    assert [t.hash for t in turns] == turn_hashes
    assert [a.hash for t in turns for a in t.attempts] == attempt_hashes
    assert [c.hash for c in calls] == call_hashes
    assert (chain.last, chain.length) == (last, 9)
