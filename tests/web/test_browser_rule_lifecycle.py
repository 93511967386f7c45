"""The rule lifecycle on the Rules tab in a real browser: descriptions and the help, an edit
highlighted until applied, a backtest of the edits on the server's history shown before
anything is applied, a rule switched to shadow (its hits next to the live rules'), the
versions with a rollback while the pipeline runs (detector state kept), and a refused change
listed and audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import LiveServer, live_server, needs_chromium, open_app, screenshot
from typer.testing import CliRunner

from fraudstream.cli import app

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app with a labelled history to backtest on."""
    where = tmp_path_factory.mktemp("rule_lifecycle")
    history, labels = where / "history.parquet", where / "labels.parquet"
    made = CliRunner().invoke(app, [
        "simulate", "--scenario", "handbook", "--customers", "60", "--terminals", "120",
        "--days", "8", "--output", str(history), "--labels-out", str(labels),
    ])  # fmt: skip
    assert made.exit_code == 0, made.output
    yield from live_server(where, history=history, history_labels=labels)


def decide(server: LiveServer, transaction_id: str, card: str, amount: float, at: int) -> Any:
    record = {"transaction_id": transaction_id, "card_id": card, "amount": amount,
              "timestamp": at}  # fmt: skip
    response = server.post("/v1/transactions", record)
    assert response.status_code == 200, response.text
    return response.json()


def test_edits_are_highlighted_backtested_then_applied_in_shadow(
    page: Any, server: LiveServer
) -> None:
    open_app(page, server, "rules", analyst="Rosa Rules")
    row = page.locator("#rules-body tr[data-rule='amount_anomaly']")
    row.wait_for()
    assert "running average" in row.locator(".rule-description").text_content()
    page.click("#rules-help summary")
    help_text = page.locator("#rules-help").text_content()
    assert "severity" in help_text and "labels [ ]" in help_text and "none" in help_text
    assert (
        page.locator("#rules-body tr[data-rule='anonymous_network'] .thresholds").text_content()
        == "labels [ ]"
    )
    assert (
        page.locator("#rules-body tr[data-rule='ip_country_mismatch'] .thresholds").text_content()
        == "none"
    )

    row.locator("select[name='mode']").select_option("shadow")
    page.wait_for_selector("#rules-body tr[data-rule='amount_anomaly'].unapplied")
    row.locator("select[name='mode']").select_option("live")  # undone: not highlighted
    page.wait_for_selector("#rules-body tr[data-rule='amount_anomaly']:not(.unapplied)")
    row.locator("input[name='score']").fill("0.95")
    page.wait_for_selector("#rules-body tr[data-rule='amount_anomaly'].unapplied")

    review = page.locator("#decision-form input[name='review_threshold']")
    review.fill("0.45")
    page.wait_for_selector("#decision-form.unapplied")
    review.fill("0.5")  # back: nothing to apply
    page.wait_for_selector("#decision-form:not(.unapplied)")

    page.click("#backtest-run")
    page.wait_for_selector("#backtest-chart polyline[data-rule='amount_anomaly']")
    report = page.locator("#backtest-report").text_content()
    assert "decision (review or decline)" in report and "approve -> decline" in report
    assert server.get("/v1/rules")["version"] == 1  # a backtest applies nothing
    assert page.locator("#rules-body tr[data-rule='amount_anomaly'].unapplied").count() == 1
    page.evaluate("document.getElementById('backtest-run').scrollIntoView()")
    screenshot(page, "rules-backtest")

    row.locator("input[name='score']").fill("0.4")  # back to the running score
    row.locator("select[name='mode']").select_option("shadow")
    row.locator("button.apply").click()
    page.wait_for_selector("#versions-body tr.current[data-version='2']")
    page.wait_for_selector("#rules-body tr[data-rule='amount_anomaly'].shadow:not(.unapplied)")
    now = int(time.time() * 1000)
    decide(server, "sh-1", "sh", 10.0, now)
    second = decide(server, "sh-2", "sh", 900.0, now + 60_000)  # 90 x the average
    assert [r["rule"] for r in second["shadow_reasons"]] == ["amount_anomaly"]
    assert second["rule_version"] == 2 and second["decision"] == "approve"
    open_app(page, server, "rules", analyst="Rosa Rules")
    hits = page.locator("#rules-body tr[data-rule='amount_anomaly'] td.hits")
    hits.wait_for()
    # The same document (only the fragment changed) shows the table it had until the rules
    # are fetched again: wait for the refreshed count instead of reading the old one.
    page.wait_for_function(
        "document.querySelector(\"#rules-body tr[data-rule='amount_anomaly'] td.hits\")"
        "?.textContent === '1'",
        timeout=10_000,
    )
    assert hits.text_content() == "1"


def test_a_rollback_on_the_page_keeps_state_and_a_refused_change_is_listed(
    page: Any, server: LiveServer
) -> None:
    open_app(page, server, "rules", analyst="Lee Rollback")
    now = int(time.time() * 1000) + 3_600_000
    decide(server, "rb-1", "rb", 0.5, now)  # small_then_large's first half, under version 2
    page.locator("#versions-body tr[data-version='1'] button.rollback").click()
    page.wait_for_selector("#versions-body tr.current[data-version='3']")
    assert (
        "rollback to version 1"
        in page.locator("#versions-body tr[data-version='3']").text_content()
    )
    large = decide(server, "rb-2", "rb", 900.0, now + 10_000)
    assert large["rule_version"] == 3
    assert large["reasons"][0]["rule"] == "small_then_large"  # the detector kept its state
    assert "amount_anomaly" in [r["rule"] for r in large["reasons"]]  # live again

    row = page.locator("#rules-body tr[data-rule='velocity']")
    row.locator("input[name='score']").fill("7")
    row.locator("button.apply").click()
    refused = page.locator("#refused-list li", has_text="velocity")
    refused.wait_for()
    assert "Lee Rollback" in refused.text_content() and "score" in refused.text_content()
    screenshot(page, "rules-versions")
    audit = (server.data_dir / "web" / "rules.audit.jsonl").read_text().splitlines()
    assert '"after": null' in audit[-1] and "velocity" in audit[-1]
    assert Path(server.data_dir / "web" / "rules.versions.jsonl").is_file()
