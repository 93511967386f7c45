"""A backtest report as one HTML page: the figures' tables and a chart of alerts per day per
rule (matplotlib, an inline SVG: the page needs nothing else)."""

from __future__ import annotations

import html
import io
from datetime import date
from typing import Any

__all__ = ["report_html"]

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.muted { color: #777; }
"""


def _figure(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_figure(row.get(c))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _chart(series: list[dict[str, Any]], title: str) -> str:
    """Alerts per day, one line per rule, as SVG text ('' when there is nothing to draw)."""
    if not series:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    by_rule: dict[str, list[tuple[date, int]]] = {}
    for point in series:
        day = date.fromisoformat(point["day"])
        by_rule.setdefault(point["rule"], []).append((day, point["alerts"]))
    figure, axes = plt.subplots(figsize=(10, 4))
    try:
        for rule, points in sorted(by_rule.items()):
            days, counts = zip(*sorted(points), strict=True)
            axes.plot(days, counts, marker=".", label=rule)
        axes.set_title(title)
        axes.set_ylabel("alerts per day")
        axes.legend(fontsize="small", ncol=2)
        figure.autofmt_xdate()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    finally:
        plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def report_html(report: dict[str, Any]) -> str:
    """The whole page for a backtest report (as :func:`~.tally.report` builds it)."""
    columns = ["id", "mode", "alerts", "true_positives", "false_positives", "precision",
               "recall", "alerts_per_day", "caught_amount"]  # fmt: skip
    decision = report["decision"]
    decision_rows = [{"rule set": name, **decision[name]} for name in ("candidate", "baseline")]
    tiers = report["tiers"]
    tier_rows = [{"rule set": name, **tiers[name]} for name in ("candidate", "baseline")]
    moves = [{"change": k, "transactions": v} for k, v in tiers.get("transitions", {}).items()]
    names = f"{report['candidate']['rules']} against {report['baseline']['rules']}"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>fraudstream backtest</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Backtest</h1><p>{html.escape(names)}: {report['transactions']:,} transactions, "
        f"{report['frauds']:,} labelled frauds, {report['days']:,.1f} days.</p>",
        "<h2>Decision (review or decline)</h2>",
        _table(
            decision_rows,
            ["rule set", "alerts", "true_positives", "false_positives", "precision", "recall"],
        ),  # fmt: skip
        "<h2>Tiers</h2>",
        _table(tier_rows, ["rule set", "approve", "review", "decline"]),
        _table(moves, ["change", "transactions"])
        if moves
        else "<p class='muted'>no tier changed</p>",
        "<h2>Candidate rules</h2>",
        _table(report["rules"], columns),
        _chart(report["alerts_per_day"]["candidate"], "candidate: alerts per day per rule"),
        "<h2>Baseline rules</h2>",
        _table(report["baseline_rules"], columns),
        _chart(report["alerts_per_day"]["baseline"], "baseline: alerts per day per rule"),
        "</body></html>",
    ]
    return "\n".join(parts)
