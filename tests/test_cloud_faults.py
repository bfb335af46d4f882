"""Cloud faults end to end: `edgecl learn` and `edgecl chat` against a real local HTTP server
that misbehaves on a script (500, 429 with Retry-After, malformed JSON, a body cut short, an
answer far too long, then good answers). Both keep working, retries stay bounded, every call
is logged, failed calls are not charged, no training step is lost or repeated, and the API key
is found nowhere in the data dir afterwards.

.venv/bin/python -m pytest tests/test_cloud_faults.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from test_chat import asking_model  # noqa: F401
from test_cloud_openai import fake_server, ok_body  # noqa: F401

from conftest import run_cli
from edgecl.store import Store

KEY = "sk-edgecl-test-4f1e9a7c0b"
FAULTS = [
    (500, {}, {"error": {"message": "boom"}}),
    (429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}),
    (200, {}, b'{"choices": [{"message": '),  # malformed: final, not retried
    (200, {"x-cut-after": "10"}, ok_body("<answer>\\boxed{3}</answer>")),  # retried
    (200, {}, ok_body("x" * (2 << 20))),  # far too long: final
    (200, {}, ok_body("<answer>\\boxed{3}</answer>")),  # from here on, good answers
]


def test_learn_keeps_going_through_cloud_faults(asking_model, fake_server, tmp_path):  # noqa: F811
    url, seen = fake_server(FAULTS)
    task = tmp_path / "sums.jsonl"
    rows = [{"prompt": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in range(12)]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("learn", "--task", str(task), "--model", str(asking_model), "--budget",
                     "0.5", "--steps", "4", "--batch-size", "2", "--group-size", "2",
                     "--max-tokens", "48", "--warmup-steps", "0", "--cloud", "openai",
                     "--cloud-model", "m", "--cloud-url", url, "--run-name", "faulty",
                     home=os.environ["EDGECL_HOME"], env={"OPENAI_API_KEY": KEY})  # fmt: skip
    assert result.returncode == 0, result.stderr
    store = Store()
    assert [s["step"] for s in store.steps("faulty")] == [1, 2, 3, 4]  # none lost or repeated
    calls = store.db.query("SELECT * FROM cloud_calls WHERE run = 'faulty' ORDER BY id")
    calls = list(calls)
    statuses = [c["status"] for c in calls]
    assert statuses[:3] == ["error", "too_long", "ok"], statuses
    assert sum(c["attempts"] for c in calls) == len(seen)  # every request made is accounted for
    assert all(c["attempts"] <= 4 for c in calls)  # bounded retries
    assert [c["charged"] for c in calls[:2]] == [0, 0] and calls[2]["charged"] == 1
    # The key went to the server, and nowhere in the data dir (database, logs, checkpoints).
    assert all(h.get("Authorization") == f"Bearer {KEY}" for h in seen)
    files = [p for p in Path(os.environ["EDGECL_HOME"]).rglob("*") if p.is_file()]
    assert files and not [p for p in files if KEY.encode() in p.read_bytes()]


def test_chat_answers_locally_when_the_cloud_fails(asking_model, fake_server):  # noqa: F811
    url, seen = fake_server([(503, {"Retry-After": "0"}, {"error": {"message": "down"}})])
    result = run_cli("chat", "--model", str(asking_model), "--cloud", "openai:m", "--cloud-url",
                     url, "--budget", "1", "--max-tokens", "32", "--json", "--once",
                     "What is 3 + 4?", home=os.environ["EDGECL_HOME"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["help_requested"] and out["cloud_called"] and not out["cloud_answered"]
    assert out["local_fallback"] and "the cloud call failed" in out["reason"]
    assert out["budget"]["calls_today"] == 0  # a failed call is not charged
    assert len(seen) == 4  # 1 + 3 retries, then it gives up
    assert len(Store().exchanges()) == 1
