"""Properties of the review state: whatever the order of verdicts, the queue and the labels
follow the last word (hypothesis), and the body limit lets through exactly the bodies within it."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.web.guard import BodyLimit
from fraudstream.web.review import VERDICTS, ReviewStore

IDS = ("a", "b", "c")


def alert(transaction_id: str) -> dict[str, Any]:
    return {"transaction_id": transaction_id, "card_id": "card", "user_id": "u",
            "event_time": "2026-01-01T00:00:00.000Z", "decision": "review", "score": 0.6,
            "reasons": [], "features": {}, "model": None}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    queued=st.sets(st.sampled_from(IDS)),
    actions=st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(VERDICTS)), max_size=12),
)
def test_queue_and_labels_follow_the_last_verdict(
    queued: set[str], actions: list[tuple[str, str]]
) -> None:
    store = ReviewStore(None)
    store.enqueue([alert(i) for i in sorted(queued)])
    status = dict.fromkeys(queued, "open")
    label: dict[str, bool] = {}
    for transaction_id, verdict in actions:
        store.record(transaction_id, verdict, "ann", f"{verdict} {transaction_id}",
                     queued=transaction_id in queued)  # fmt: skip
        if transaction_id in status:
            status[transaction_id] = "escalated" if verdict == "escalate" else "closed"
        if verdict != "escalate":
            label[transaction_id] = verdict == "confirm_fraud"
        if len(queued) == 3 and store.enqueue([alert("a")]) != 0:  # queueing again: no change
            raise AssertionError("an alert was queued twice")
    everything = store.queue(("open", "escalated", "closed"), 100)
    assert {e["transaction_id"]: e["status"] for e in everything} == status
    waiting = {e["transaction_id"] for e in store.queue(("open", "escalated"), 100)}
    assert waiting == {i for i, s in status.items() if s != "closed"}
    assert store.waiting() == len(waiting)
    assert {x["transaction_id"]: x["is_fraud"] for x in store.labels()} == label
    assert len(store.reviews(None, 1000)) == len(actions)
    for transaction_id in IDS:
        mine = [v for i, v in actions if i == transaction_id]
        assert [r["verdict"] for r in store.reviews(transaction_id, 100)] == mine[::-1]
    store.close()


async def _through_limit(chunks: list[bytes], limit: int) -> tuple[int, bytes]:
    seen: list[bytes] = []

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ] or [{"type": "http.request", "body": b""}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/v1/rules", "method": "PATCH", "headers": []}
    await BodyLimit(endpoint, limit, frozenset())(scope, receive, send)
    return sent[0]["status"], b"".join(seen)


@settings(max_examples=80, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40), max_size=8), limit=st.integers(0, 150))
def test_the_body_limit_passes_exactly_the_bodies_within_it(
    chunks: list[bytes], limit: int
) -> None:
    status, body = asyncio.run(_through_limit(chunks, limit))
    whole = b"".join(chunks)
    if len(whole) <= limit:
        assert (status, body) == (200, whole)
    else:
        assert (status, body) == (413, b"")
