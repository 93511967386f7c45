// The review queue as cases: one case per card (its alerts, the user's name, status, assignee,
// age, priority), a page at a time with the true total; the selected case's detail stays in
// view beside the list. Actions (confirm fraud, mark legitimate, escalate with a note saying
// why, assign to me) apply to the selected case or, in bulk, to the ticked ones; the server
// audits each. Keys: j/k move, x ticks, c/l/e act.

import { analyst, fmtAmount, fmtNumber, fmtTime, get, h, onDecision, post, status, tierBadge } from "./api.js";

const PER_PAGE = 25;
const VERDICT_TEXT = {
  confirm_fraud: "confirmed as fraud",
  mark_legitimate: "marked legitimate",
  escalate: "escalated",
  assign: "assigned",
};
let page = 1;
let pages = 1;
let cases = []; // the cases on this page, in order
let current = null; // the card id shown in detail
const ticked = new Set(); // card ids selected for a bulk action
let refreshTimer = null;

export function initReview() {
  const reload = () => {
    page = 1;
    loadQueue();
  };
  document.getElementById("queue-status").addEventListener("change", reload);
  document.getElementById("case-sort").addEventListener("change", reload);
  let typing = null;
  document.getElementById("case-search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(reload, 250);
  });
  document.getElementById("case-prev").addEventListener("click", () => turn(-1));
  document.getElementById("case-next").addEventListener("click", () => turn(1));
  document.getElementById("case-all").addEventListener("change", (event) => {
    for (const c of cases) {
      if (event.target.checked) ticked.add(c.card_id);
      else ticked.delete(c.card_id);
    }
    renderList();
  });
  for (const button of document.querySelectorAll(".bulk button[data-bulk]")) {
    button.addEventListener("click", () => act([...ticked], button.dataset.bulk));
  }
  for (const button of document.querySelectorAll("#review-actions button")) {
    button.addEventListener("click", () => current && act([current], button.dataset.verdict));
  }
  document.addEventListener("keydown", onKey);
  onDecision((decision) => {
    if (decision.decision !== "approve" && !refreshTimer) {
      refreshTimer = setTimeout(() => {
        refreshTimer = null;
        if (visible()) loadQueue();
      }, 1500);
    }
  });
}

function visible() {
  return !document.getElementById("tab-review").hidden;
}

export async function reviewShown() {
  await Promise.all([loadQueue(), loadLabels()]);
}

function turn(step) {
  const next = Math.min(pages, Math.max(1, page + step));
  if (next === page) return;
  page = next;
  loadQueue();
}

async function loadQueue() {
  const query = new URLSearchParams({
    status: document.getElementById("queue-status").value,
    search: document.getElementById("case-search").value.trim(),
    sort: document.getElementById("case-sort").value,
    page: String(page),
    per_page: String(PER_PAGE),
  });
  const found = await get(`/v1/review-cases?${query}`);
  if (found.page > found.pages && found.total > 0) {
    page = found.pages;
    return loadQueue();
  }
  cases = found.cases;
  pages = found.pages;
  document.getElementById("queue-count").textContent =
    `${fmtNumber(found.total, 0)} case(s), ${fmtNumber(found.alerts, 0)} alert(s)`;
  document.getElementById("case-page").textContent = `page ${found.page} of ${found.pages}`;
  document.getElementById("case-prev").disabled = found.page <= 1;
  document.getElementById("case-next").disabled = found.page >= found.pages;
  const empty = document.getElementById("queue-empty");
  empty.hidden = cases.length > 0;
  empty.textContent = query.get("search")
    ? `no case matches "${query.get("search")}" in "${query.get("status")}"`
    : `no case in "${query.get("status")}"`;
  renderList();
}

function age(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d`;
}

function renderList() {
  document.getElementById("queue-body").replaceChildren(
    ...cases.map((c) =>
      h("tr", {
        dataset: { card: c.card_id, status: c.status },
        class: c.card_id === current ? "selected" : "",
        onclick: (event) => {
          if (event.target.type !== "checkbox") show(c.card_id);
        },
      },
        h("td", {}, h("input", {
          type: "checkbox", class: "tick", checked: ticked.has(c.card_id), title: "select for a bulk action (x)",
          onchange: (event) => {
            if (event.target.checked) ticked.add(c.card_id);
            else ticked.delete(c.card_id);
            showTicked();
          },
        })),
        h("td", { class: "num" }, h("span", { class: `priority p-${band(c.priority)}` }, String(c.priority))),
        h("td", { class: "user", title: c.user_id || "" }, c.user_name || c.user_id || "-"),
        h("td", { class: "mono" }, c.card_id),
        h("td", { class: "num" }, String(c.alerts)),
        // the currency only when it is not the usual USD: one line per case
        h("td", { class: "num", title: c.currency || "" }, `${fmtAmount(c.amount)}${c.currency && c.currency !== "USD" ? ` ${c.currency}` : ""}`),
        h("td", {}, tierBadge(c.decision), ` ${fmtNumber(c.score, 2)}`),
        h("td", { title: `queued ${fmtTime(c.queued_at)}` }, age(c.age_s)),
        h("td", {}, h("span", { class: `status status-${c.status}`, title: c.escalation ? `${c.escalation.analyst}: ${c.escalation.note}` : "" }, c.status)),
        h("td", {}, c.assignee || ""),
        h("td", { class: "rules", title: c.rules.join(", ") }, c.rules.map((r) => h("span", { class: "rule" }, r))),
      ),
    ),
  );
  showTicked();
}

function band(priority) {
  return priority >= 110 ? "high" : priority >= 80 ? "mid" : "low";
}

function showTicked() {
  document.getElementById("bulk-count").textContent = `${ticked.size} selected`;
  for (const button of document.querySelectorAll(".bulk button[data-bulk]")) button.disabled = ticked.size === 0;
  const all = document.getElementById("case-all");
  all.checked = cases.length > 0 && cases.every((c) => ticked.has(c.card_id));
}

async function show(cardId) {
  current = cardId;
  for (const row of document.querySelectorAll("#queue-body tr")) {
    row.classList.toggle("selected", row.dataset.card === cardId);
    if (row.dataset.card === cardId) row.scrollIntoView({ block: "nearest" });
  }
  const c = await get(`/v1/review-cases/${encodeURIComponent(cardId)}`);
  if (current !== cardId) return; // another case was chosen meanwhile
  document.getElementById("review-detail").hidden = false;
  const who = c.user_name ? `${c.user_name} (${c.user_id})` : c.user_id || "unknown user";
  document.getElementById("review-summary").replaceChildren(
    h("h3", {}, `${who} `, tierBadge(c.decision), ` score ${fmtNumber(c.score, 3)}`),
    h("p", {},
      h("span", { class: `status status-${c.status}` }, c.status),
      ` · card ${c.card_id} · ${c.alerts} alert(s), ${fmtAmount(c.amount)} ${c.currency || ""}`,
      ` · priority ${c.priority} · queued ${age(c.age_s)} ago`,
      c.assignee ? ` · assigned to ${c.assignee}` : " · unassigned"),
    c.escalation
      ? h("p", { class: "escalation" }, `escalated by ${c.escalation.analyst} at ${fmtTime(c.escalation.at)}: ${c.escalation.note}`)
      : "",
    h("ul", { class: "reasons" },
      uniqueReasons(c.alert_entries).map((r) => h("li", {}, h("b", {}, r.rule), ` ${r.message}`))),
  );
  document.getElementById("case-alerts-body").replaceChildren(
    ...c.alert_entries.map((a) =>
      h("tr", { dataset: { id: a.transaction_id } },
        h("td", {}, fmtTime(a.event_time)),
        h("td", { class: "mono" }, a.transaction_id),
        h("td", { class: "num" }, a.transaction ? fmtAmount(a.transaction.amount) : ""),
        h("td", {}, tierBadge(a.decision)),
        h("td", { class: "num" }, fmtNumber(a.score, 3)),
        h("td", {}, a.status),
      ),
    ),
  );
  const inCase = new Set(c.transaction_ids);
  document.getElementById("history-body").replaceChildren(
    ...c.card_history.map((d) =>
      h("tr", { class: inCase.has(d.transaction_id) ? "selected" : "" },
        h("td", {}, fmtTime(d.event_time)),
        h("td", { class: "mono" }, d.transaction_id),
        h("td", { class: "num" }, d.amount === undefined ? "" : fmtAmount(d.amount)),
        h("td", {}, d.merchant_id || ""),
        h("td", {}, d.country || ""),
        h("td", {}, tierBadge(d.decision)),
        h("td", { class: "rules" }, d.rules.map((r) => h("span", { class: "rule" }, r))),
      ),
    ),
  );
  document.getElementById("review-log").replaceChildren(
    ...c.actions.map((a) =>
      h("li", { dataset: { action: a.action } },
        `${fmtTime(a.at)} ${a.analyst}: ${VERDICT_TEXT[a.action] || a.action}`,
        a.action === "assign" ? ` to ${a.assignee || "nobody"}` : "",
        a.transactions.length ? ` (${a.transactions.length} alert(s))` : "",
        a.note ? `: ${a.note}` : ""),
    ),
  );
}

function uniqueReasons(alerts) {
  const seen = new Map();
  for (const a of alerts) for (const r of a.reasons) if (!seen.has(r.message)) seen.set(r.message, r);
  return [...seen.values()];
}

async function act(cardIds, action) {
  if (!cardIds.length) return;
  const who = analyst();
  if (!who) {
    status("enter your analyst name (top right) first", "error");
    document.getElementById("analyst").focus();
    return;
  }
  const noteField = document.getElementById("review-note");
  const note = noteField.value.trim();
  if (action === "escalate" && !note) {
    status("an escalation needs a note saying why: write it in the note box, then escalate", "error");
    document.getElementById("review-detail").hidden = false;
    noteField.focus();
    return;
  }
  const body = { card_ids: cardIds, action, analyst: who, note };
  if (action === "assign") body.assignee = who;
  try {
    const result = await post("/v1/case-actions", body);
    const alerts = result.done.reduce((n, d) => n + d.transactions.length, 0);
    const what = cardIds.length === 1 ? `case ${cardIds[0]}` : `${result.done.length} cases`;
    status(`${what} ${VERDICT_TEXT[action]} by ${who}${action === "assign" ? "" : ` (${alerts} alert(s))`}`);
    noteField.value = "";
    for (const id of cardIds) ticked.delete(id);
    const closing = action === "confirm_fraud" || action === "mark_legitimate";
    const index = cases.findIndex((c) => c.card_id === current);
    await Promise.all([loadQueue(), loadLabels()]);
    if (current && cardIds.includes(current) && closing && document.getElementById("queue-status").value !== "closed"
        && document.getElementById("queue-status").value !== "all") {
      // The case left the list: the next one takes its place in the detail panel.
      const next = cases[Math.min(index, cases.length - 1)];
      if (next) await show(next.card_id);
      else {
        current = null;
        document.getElementById("review-detail").hidden = true;
      }
    } else if (current) await show(current);
  } catch (error) {
    status(error.message, "error");
  }
}

function onKey(event) {
  if (!visible() || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) {
    if (event.key === "Escape") target.blur();
    return;
  }
  const index = cases.findIndex((c) => c.card_id === current);
  const key = event.key;
  if (key === "j" || key === "k") {
    if (!cases.length) return;
    const next = index < 0 ? 0 : Math.min(cases.length - 1, Math.max(0, index + (key === "j" ? 1 : -1)));
    show(cases[next].card_id);
  } else if (key === "x" && current) {
    if (ticked.has(current)) ticked.delete(current);
    else ticked.add(current);
    renderList();
  } else if (key === "c" && current) act([current], "confirm_fraud");
  else if (key === "l" && current) act([current], "mark_legitimate");
  else if (key === "e" && current) act([current], "escalate");
  else return;
  event.preventDefault();
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
