// The live feed: the last decisions from the decision store (back-filled when the tab opens),
// then every decision as it is made (Server-Sent Events); filterable by tier and rule, with
// the users' names.

import { fmtAmount, fmtNumber, fmtTime, get, h, onDecision, tierBadge, userName } from "./api.js";

const KEPT = 500;
const SHOWN = 200;
let rows = []; // newest first
const seen = new Set();
let paused = false;
let filled = false;
const filledTiers = new Set(); // tiers whose own newest decisions were read too

export function initFeed() {
  const tier = document.getElementById("feed-tier");
  const rule = document.getElementById("feed-rule");
  tier.addEventListener("change", () => fillTier(tier.value).then(render));
  rule.addEventListener("change", render);
  document.getElementById("feed-pause").addEventListener("click", (event) => {
    paused = !paused;
    event.target.textContent = paused ? "resume" : "pause";
    if (!paused) render();
  });
  onDecision((decision) => {
    add([decision]);
    if (!paused && visible()) render();
  });
  document.addEventListener("profiles-loaded", () => visible() && render());
  loadRules().catch(() => {}); // without the read token: the status line says so elsewhere
}

function visible() {
  return !document.getElementById("tab-feed").hidden;
}

export async function feedShown() {
  await Promise.all([loadRules(), filled ? null : backfill()]);
  await fillTier(document.getElementById("feed-tier").value);
  render();
}

export function forgetFeed() {
  filled = false; // a new token may read what the old one could not
  filledTiers.clear();
}

// A tier's own newest decisions: the alerts are rarer than the newest 500 of every tier.
async function fillTier(tier) {
  const tiers = tier === "alerts" ? ["review", "decline"] : tier ? [tier] : [];
  for (const t of tiers.filter((t) => !filledTiers.has(t))) {
    add(await get(`/v1/decisions?decision=${t}&limit=${KEPT}`));
    filledTiers.add(t);
  }
}

async function backfill() {
  const stored = await get(`/v1/decisions?limit=${KEPT}`);
  filled = true;
  add(stored);
}

function add(decisions) {
  for (const d of decisions) {
    if (seen.has(d.transaction_id)) continue;
    seen.add(d.transaction_id);
    rows.push(d);
  }
  // newest event first; the same event time: the later decided first
  rows.sort((a, b) => (b.event_time || "").localeCompare(a.event_time || "")
    || (b.processed_at || "").localeCompare(a.processed_at || ""));
  const kept = KEPT * 3; // the newest of every tier, and of the alert tiers
  if (rows.length > kept) {
    for (const d of rows.slice(kept)) seen.delete(d.transaction_id);
    rows = rows.slice(0, kept);
  }
}

export async function loadRules() {
  const select = document.getElementById("feed-rule");
  const rules = await get("/v1/rules");
  const current = select.value; // read after the wait: a rule chosen meanwhile stays chosen
  const ids = [...rules.rules.map((r) => r.id), ...(rules.user_rules || []).map((r) => r.id)];
  select.replaceChildren(h("option", { value: "" }, "any rule"), ...ids.map((id) => h("option", { value: id }, id)));
  select.value = current;
}

function matches(decision, tier, rule) {
  if (tier === "alerts" && decision.decision === "approve") return false;
  if (tier && tier !== "alerts" && decision.decision !== tier) return false;
  if (rule && !decision.reasons.some((r) => r.rule === rule)) return false;
  return true;
}

function render() {
  const tier = document.getElementById("feed-tier").value;
  const rule = document.getElementById("feed-rule").value;
  const matching = rows.filter((d) => matches(d, tier, rule));
  const shown = matching.slice(0, SHOWN);
  document.getElementById("feed-count").textContent =
    `${matching.length} of the ${rows.length} newest decisions read match${matching.length > SHOWN ? ` (the newest ${SHOWN} shown)` : ""}${paused ? " · paused" : ""}`;
  const empty = document.getElementById("feed-empty");
  empty.hidden = shown.length > 0;
  if (!rows.length) {
    empty.textContent = "no decision yet: pay on the map, POST /v1/transactions, or run `fraudstream demo`; new decisions appear here as they are made";
  } else {
    const filters = [tier && `tier "${tier}"`, rule && `rule "${rule}"`].filter(Boolean).join(" and ");
    empty.textContent = `none of the ${rows.length} newest decisions read has ${filters}: choose another filter, or wait for one`;
  }
  document.getElementById("feed-body").replaceChildren(
    ...shown.map((d) => {
      const tx = d.transaction || {};
      return h("tr", { dataset: { id: d.transaction_id, decision: d.decision } },
        h("td", {}, fmtTime(d.event_time)),
        h("td", { class: "mono" }, d.transaction_id),
        h("td", { class: "mono" }, d.card_id),
        h("td", { title: d.user_id || "" }, userName(d.user_id)),
        h("td", { class: "num" }, tx.amount === undefined ? "" : `${fmtAmount(tx.amount)} ${tx.currency || ""}`),
        h("td", {}, tierBadge(d.decision)),
        h("td", { class: "num" }, fmtNumber(d.score, 3)),
        h("td", { class: "rules" }, d.reasons.map((r) => h("span", { class: "rule", title: r.message }, r.rule))),
      );
    }),
  );
}
