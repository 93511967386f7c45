"""Concurrent decision requests are decided together (micro-batches), with the decisions of
``fraudstream run`` over the same records in arrival order; a bad record in a batch is
answered alone and never fails the others."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_api import AUTH, COMPARED, TOKEN, bad_record, good_records

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.io.files import FileSource
from fraudstream.run import Outputs, Runner
from fraudstream.schema import CardTokenizer
from fraudstream.web.app import create_app
from fraudstream.web.batching import Batching

DAY_MS = 86_400_000  # lateness: requests of one wave arrive a few places out of time order


def pipeline() -> Any:
    return build_pipeline(None, None, TimeMode.event, 0, DAY_MS, 1_000, None, None)


def run_decisions(records: list[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    """What ``fraudstream run`` decides for these records, in this order."""
    source = tmp_path / "input.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    output = tmp_path / "decisions.jsonl"
    runner = Runner(pipeline(), Outputs(decisions=str(output)), CardTokenizer.from_environment())
    runner.run(FileSource(source, "jsonl"))
    return [json.loads(line) for line in output.read_text().splitlines()]


async def post_in_waves(
    app: Any, records: list[Any], waves: list[int]
) -> tuple[list[httpx.Response], list[int]]:
    """Each wave's requests sent at once; the next wave when all of them are answered."""
    responses: list[httpx.Response] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        start, wave_of = 0, []
        for number, size in enumerate(waves * (len(records) // max(1, sum(waves)) + 1)):
            wave = records[start : start + size]
            if not wave:
                break
            responses += await asyncio.gather(
                *(client.post("/v1/transactions", json=r, headers=AUTH) for r in wave)
            )
            wave_of += [number] * len(wave)
            start += size
    return responses, wave_of


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**16),
    waves=st.lists(st.integers(1, 24), min_size=1, max_size=6),
    wait_ms=st.sampled_from([0.0, 1.0, 2.0]),
    max_records=st.sampled_from([1, 3, 512]),
)
# one record a step: a large amount late within the lateness, after a record that moved the
# watermark past its small amount's window (the timer sweep once cleared the small before it)
@example(seed=2968, waves=[1], wait_ms=0.0, max_records=1)
def test_concurrent_requests_decide_like_run_in_arrival_order(
    tmp_path: Path, seed: int, waves: list[int], wait_ms: float, max_records: int
) -> None:
    rng = random.Random(seed)
    records: list[Any] = list(good_records(rng, 150))
    bad: dict[str, str] = {}  # transaction id (or position marker) -> the field named
    for i in range(15):
        record, field = bad_record(rng, i)
        records.insert(rng.randrange(len(records) + 1), record)
        bad[json.dumps(record, sort_keys=True)] = field
    app = create_app(
        pipeline(),
        TOKEN,
        CardTokenizer.from_environment(),
        batching=Batching(max_wait_ms=wait_ms, max_records=max_records),
    )
    batches: list[list[dict[str, Any]]] = []
    app.state.service.listeners.append(lambda rows, _summaries: batches.append(rows))

    responses, wave_of = asyncio.run(post_in_waves(app, records, waves))

    decided_order = [row for batch in batches for row in batch]
    row_by_id = {row["transaction_id"]: row for row in decided_order}
    wave_by_id: dict[str, int] = {}
    for record, response, wave in zip(records, responses, wave_of, strict=True):
        key = json.dumps(record, sort_keys=True)
        if key in bad:  # answered alone with its reason; the rest of its batch is decided
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["field"] == bad[key]
        else:
            assert response.status_code == 200, response.text
            assert response.json() == row_by_id[record["transaction_id"]]  # its own
            wave_by_id[record["transaction_id"]] = wave
    assert len(decided_order) == len(wave_by_id) == 150
    # Arrival order: a wave's records are decided after every record of the waves before.
    waves_decided = [wave_by_id[row["transaction_id"]] for row in decided_order]
    assert waves_decided == sorted(waves_decided)
    assert all(len(batch) <= max_records for batch in batches)
    if max_records > 1 and max(waves) > 1 and len(records) > max(waves):
        assert any(len(batch) > 1 for batch in batches)  # concurrent requests share a step

    by_id = {r["transaction_id"]: r for r in records if json.dumps(r, sort_keys=True) not in bad}
    in_arrival_order = [by_id[row["transaction_id"]] for row in decided_order]
    expected = run_decisions(in_arrival_order, tmp_path)
    assert [d["transaction_id"] for d in expected] == [d["transaction_id"] for d in decided_order]
    for api, run in zip(decided_order, expected, strict=True):
        assert all(api[k] == run[k] for k in COMPARED), (api, run)


def test_a_full_batch_is_decided_without_waiting_out_the_wait() -> None:
    """A wait of a second, 3 records at most a batch: 6 concurrent requests are two full
    batches, each decided as it fills (were they not, all six would wait out the second
    and be decided as one batch)."""
    app = create_app(
        pipeline(),
        TOKEN,
        CardTokenizer.from_environment(),
        batching=Batching(max_wait_ms=1000.0, max_records=3),
    )
    service = app.state.service
    sizes: list[int] = []
    service.listeners.append(lambda rows, _summaries: sizes.append(len(rows)))
    records = good_records(random.Random(3), 6)

    async def send() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answers = await asyncio.gather(
                *(client.post("/v1/transactions", json=r, headers=AUTH) for r in records)
            )
        return [a.status_code for a in answers]

    assert asyncio.run(send()) == [200] * 6
    assert sizes == [3, 3]


@pytest.mark.parametrize("wait_ms, max_records", [(-1.0, 10), (1.0, 0), (float("nan"), 10)])
def test_batching_refuses_nonsense(wait_ms: float, max_records: int) -> None:
    with pytest.raises(ValueError):
        Batching(wait_ms, max_records)


def test_what_serve_runs_answers_like_the_app_over_real_connections() -> None:
    """``app.state.served`` (what ``fraudstream serve`` hands uvicorn: the hot path outside
    the framework) on a real server: concurrent keep-alive clients are decided in batches,
    each its own decision; a bad body is a 422 and a dead letter; a foreign Host, a wrong
    token and other paths go on to the app and get its answers."""
    import socket
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn

    app = create_app(pipeline(), TOKEN, CardTokenizer.from_environment())
    sizes: list[int] = []
    app.state.service.listeners.append(lambda rows, _summaries: sizes.append(len(rows)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app.state.served, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    records = good_records(random.Random(7), 120)
    try:
        with httpx.Client(base_url=url, headers=AUTH) as first:
            assert first.post("/v1/transactions", content=b"{oops").status_code == 422
            foreign = first.post(
                "/v1/transactions", json=records[0], headers={"Host": "evil.example"}
            )
            assert foreign.status_code == 400
            wrong = first.post(
                "/v1/transactions", json=records[0], headers={"Authorization": "Bearer x"}
            )
            assert wrong.status_code == 401
            assert first.get("/healthz").json()["dead_letters"] == 1

        def send(chunk: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
            with httpx.Client(base_url=url, headers=AUTH) as client:
                out = []
                for record in chunk:
                    answer = client.post("/v1/transactions", json=record)
                    out.append(
                        (
                            record["transaction_id"],
                            answer.status_code,
                            answer.json().get("transaction_id", ""),
                        )
                    )
                return out

        with ThreadPoolExecutor(8) as pool:
            answers = [
                a for part in pool.map(send, [records[i::8] for i in range(8)]) for a in part
            ]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert all(status == 200 and sent == got for sent, status, got in answers)
    assert sum(sizes) == 120


def test_a_batch_left_open_by_an_ended_event_loop_is_decided_with_the_next() -> None:
    """An event loop that ends with a batch open (a test client closed, a server restarted
    in the same process) does not strand the batches after it."""
    from fraudstream.web.service import DecisionService

    service = DecisionService(
        pipeline(), CardTokenizer.from_environment(), batching=Batching(max_wait_ms=50.0)
    )
    first, second = good_records(random.Random(1), 2)

    async def abandon() -> None:
        task = asyncio.ensure_future(service.decide([first], None))
        await asyncio.sleep(0)  # it joins a batch; then its loop ends
        task.cancel()

    asyncio.run(abandon())

    async def later() -> Any:
        return await asyncio.wait_for(service.decide([second], None), 30)

    (outcome,) = asyncio.run(later())
    assert outcome.status == 200 and outcome.body["transaction_id"] == second["transaction_id"]
    assert service.counts["decided"] == 2  # the abandoned record had been accepted
