// The live feed: every decision as it is made (Server-Sent Events), filterable by tier and rule.

import { fmtNumber, fmtTime, get, h, onDecision, tierBadge } from "./api.js";

const KEPT = 500;
const rows = []; // newest first
let paused = false;

export function initFeed() {
  const tier = document.getElementById("feed-tier");
  const rule = document.getElementById("feed-rule");
  tier.addEventListener("change", render);
  rule.addEventListener("change", render);
  document.getElementById("feed-pause").addEventListener("click", (event) => {
    paused = !paused;
    event.target.textContent = paused ? "resume" : "pause";
    if (!paused) render();
  });
  onDecision((decision) => {
    rows.unshift(decision);
    if (rows.length > KEPT) rows.pop();
    if (!paused) render();
  });
  loadRules();
}

export async function loadRules() {
  const select = document.getElementById("feed-rule");
  const current = select.value;
  const rules = await get("/v1/rules");
  select.replaceChildren(h("option", { value: "" }, "any rule"), ...rules.rules.map((r) => h("option", { value: r.id }, r.id)));
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
  const shown = rows.filter((d) => matches(d, tier, rule)).slice(0, 200);
  document.getElementById("feed-count").textContent = `${shown.length} shown of the last ${rows.length} decisions`;
  document.getElementById("feed-body").replaceChildren(
    ...shown.map((d) => {
      const tx = d.transaction || {};
      return h("tr", { dataset: { id: d.transaction_id, decision: d.decision } },
        h("td", {}, fmtTime(d.event_time)),
        h("td", { class: "mono" }, d.transaction_id),
        h("td", { class: "mono" }, d.card_id),
        h("td", {}, d.user_id),
        h("td", { class: "num" }, tx.amount === undefined ? "" : `${fmtNumber(tx.amount, 2)} ${tx.currency || ""}`),
        h("td", {}, tierBadge(d.decision)),
        h("td", { class: "num" }, fmtNumber(d.score, 3)),
        h("td", { class: "rules" }, d.reasons.map((r) => h("span", { class: "rule", title: r.message }, r.rule))),
      );
    }),
  );
}
