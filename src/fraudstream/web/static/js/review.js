// The review queue: alerts waiting for an analyst, with reasons and the card's recent history;
// each verdict (confirm fraud, mark legitimate, escalate) is recorded with who, when and a note,
// and becomes a label for the models.

import { analyst, fmtNumber, fmtTime, get, h, onDecision, post, status, tierBadge } from "./api.js";

let current = null; // the transaction id shown in detail
let refreshTimer = null;

export function initReview() {
  document.getElementById("queue-status").addEventListener("change", loadQueue);
  for (const button of document.querySelectorAll("#review-actions button")) {
    button.addEventListener("click", () => verdict(button.dataset.verdict));
  }
  onDecision((decision) => {
    if (decision.decision !== "approve" && !refreshTimer) {
      refreshTimer = setTimeout(() => {
        refreshTimer = null;
        if (visible()) loadQueue();
      }, 1000);
    }
  });
}

function visible() {
  return !document.getElementById("tab-review").hidden;
}

export async function reviewShown() {
  await Promise.all([loadQueue(), loadLabels()]);
}

async function loadQueue() {
  const which = document.getElementById("queue-status").value;
  const items = await get(`/v1/review-queue?status=${encodeURIComponent(which)}&limit=200`);
  document.getElementById("queue-count").textContent = `${items.length} alert(s)`;
  document.getElementById("queue-body").replaceChildren(
    ...items.map((item) =>
      h("tr", {
        dataset: { id: item.transaction_id, status: item.status },
        class: item.transaction_id === current ? "selected" : "",
        onclick: () => show(item.transaction_id),
      },
        h("td", {}, fmtTime(item.event_time)),
        h("td", { class: "mono" }, item.transaction_id),
        h("td", { class: "mono" }, item.card_id),
        h("td", { class: "num" }, item.transaction ? fmtNumber(item.transaction.amount, 2) : ""),
        h("td", {}, tierBadge(item.decision)),
        h("td", { class: "num" }, fmtNumber(item.score, 3)),
        h("td", { class: "rules" }, item.reasons.map((r) => h("span", { class: "rule" }, r.rule))),
        h("td", {}, h("span", { class: `status status-${item.status}` }, item.status)),
      ),
    ),
  );
}

async function show(transactionId) {
  current = transactionId;
  const item = await get(`/v1/review-queue/${encodeURIComponent(transactionId)}`);
  for (const row of document.querySelectorAll("#queue-body tr")) {
    row.classList.toggle("selected", row.dataset.id === transactionId);
  }
  const tx = item.transaction || {};
  document.getElementById("review-detail").hidden = false;
  document.getElementById("review-summary").replaceChildren(
    h("h3", {}, `${item.transaction_id} `, tierBadge(item.decision), ` score ${fmtNumber(item.score, 3)} · ${item.status}`),
    h("p", {}, `card ${item.card_id} · user ${item.user_id} · ${fmtTime(item.event_time)} · `,
      `${fmtNumber(tx.amount, 2)} ${tx.currency || ""} at ${tx.merchant_id || "?"} (${tx.country || "?"})`),
    h("ul", { class: "reasons" }, item.reasons.map((r) => h("li", {}, h("b", {}, r.rule), ` ${r.message}`))),
  );
  document.getElementById("history-body").replaceChildren(
    ...item.card_history.map((d) =>
      h("tr", { class: d.transaction_id === item.transaction_id ? "selected" : "" },
        h("td", {}, fmtTime(d.event_time)),
        h("td", { class: "mono" }, d.transaction_id),
        h("td", { class: "num" }, d.amount === undefined ? "" : fmtNumber(d.amount, 2)),
        h("td", {}, d.merchant_id || ""),
        h("td", {}, d.country || ""),
        h("td", {}, tierBadge(d.decision)),
        h("td", { class: "rules" }, d.rules.map((r) => h("span", { class: "rule" }, r))),
      ),
    ),
  );
  document.getElementById("review-log").replaceChildren(
    ...item.reviews.map((r) => h("li", {}, `${fmtTime(r.at)} ${r.analyst}: ${r.verdict}${r.note ? ` (${r.note})` : ""}`)),
  );
}

async function verdict(kind) {
  if (!current) return;
  const who = analyst();
  if (!who) {
    status("enter your analyst name (top right) first", "error");
    document.getElementById("analyst").focus();
    return;
  }
  const note = document.getElementById("review-note").value;
  try {
    const result = await post(`/v1/reviews/${encodeURIComponent(current)}`, { verdict: kind, analyst: who, note });
    status(`${current}: ${kind.replace("_", " ")} by ${who}${result.label ? ` -> label is_fraud=${result.label.is_fraud}` : ""}`);
    document.getElementById("review-note").value = "";
    if (kind !== "escalate") {
      current = null;
      document.getElementById("review-detail").hidden = true;
    }
    await Promise.all([loadQueue(), loadLabels()]);
    if (current) await show(current);
  } catch (error) {
    status(error.message, "error");
  }
}

async function loadLabels() {
  const since = new Date(Date.now() - 7 * 24 * 3600 * 1000).toISOString();
  const labels = await get(`/v1/labels?since=${encodeURIComponent(since)}`);
  const newest = labels.slice(-100).reverse();
  document.getElementById("labels-body").replaceChildren(
    ...newest.map((l) =>
      h("tr", { dataset: { id: l.transaction_id, fraud: String(l.is_fraud) } },
        h("td", { class: "mono" }, l.transaction_id),
        h("td", {}, l.is_fraud ? "fraud" : "legitimate"),
        h("td", {}, fmtTime(l.label_time)),
        h("td", {}, l.analyst),
        h("td", {}, l.verdict),
        h("td", {}, l.note),
      ),
    ),
  );
}
