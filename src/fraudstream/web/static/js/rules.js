// The running rules: enable/disable, score, severity and thresholds, applied to the running
// pipeline at once (no restart), with the audit log of every change.

import { analyst, fmtTime, get, h, patch, status } from "./api.js";

export function initRules() {
  document.getElementById("decision-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    await change("/v1/rules", {
      review_threshold: Number(form.elements.review_threshold.value),
      decline_threshold: Number(form.elements.decline_threshold.value),
    }, "decision thresholds");
  });
}

export async function rulesShown() {
  await Promise.all([loadRules(), loadAudit()]);
}

async function change(path, body, what) {
  const who = analyst();
  if (!who) {
    status("enter your analyst name (top right) first", "error");
    document.getElementById("analyst").focus();
    return false;
  }
  try {
    await patch(path, { ...body, who, note: document.getElementById("rules-note").value });
    status(`${what}: applied to the running pipeline`);
    await Promise.all([loadRules(), loadAudit()]);
    return true;
  } catch (error) {
    status(`${what}: ${error.message}`, "error");
    await loadAudit();
    return false;
  }
}

async function loadRules() {
  const rules = await get("/v1/rules");
  const form = document.getElementById("decision-form");
  form.elements.review_threshold.value = rules.decision.review_threshold;
  form.elements.decline_threshold.value = rules.decision.decline_threshold;
  document.getElementById("rules-body").replaceChildren(...rules.rules.map(ruleRow));
}

function ruleRow(rule) {
  const enabled = h("input", { type: "checkbox", checked: rule.enabled, name: "enabled" });
  const score = h("input", { type: "number", min: 0, max: 1, step: 0.01, value: rule.score, name: "score", class: "small" });
  const severity = h("select", { name: "severity" }, ...["low", "medium", "high", "critical"].map((s) => h("option", { value: s, selected: s === rule.severity }, s)));
  const inputs = Object.entries(rule.thresholds).map(([name, value]) => {
    const input = typeof value === "boolean"
      ? h("input", { type: "checkbox", checked: value, dataset: { threshold: name, kind: "bool" } })
      : typeof value === "number"
        ? h("input", { type: "number", step: "any", value, class: "small", dataset: { threshold: name, kind: "number" } })
        : h("span", { class: "mono", title: "set in a rules file" }, JSON.stringify(value));
    const changed = JSON.stringify(value) !== JSON.stringify(rule.defaults[name]);
    return h("label", { class: changed ? "threshold changed" : "threshold", title: `default ${rule.defaults[name]}` }, `${name} `, input);
  });
  const apply = h("button", { type: "button", class: "apply" }, "apply");
  const row = h("tr", { dataset: { rule: rule.id } },
    h("td", { class: "mono" }, rule.id, rule.id !== rule.detector ? h("div", { class: "muted" }, `(${rule.detector})`) : null),
    h("td", {}, enabled),
    h("td", {}, score),
    h("td", {}, severity),
    h("td", { class: "thresholds" }, inputs.length ? inputs : h("span", { class: "muted" }, "none")),
    h("td", {}, apply),
  );
  apply.addEventListener("click", async () => {
    const thresholds = {};
    for (const input of row.querySelectorAll("[data-threshold]")) {
      const value = input.dataset.kind === "bool" ? input.checked : Number(input.value);
      if (input.dataset.kind !== "bool" && (input.value === "" || Number.isNaN(value))) {
        status(`${rule.id}: ${input.dataset.threshold} must be a number`, "error");
        return;
      }
      if (value !== rule.thresholds[input.dataset.threshold]) thresholds[input.dataset.threshold] = value;
    }
    await change(`/v1/rules/${encodeURIComponent(rule.id)}`, {
      enabled: enabled.checked,
      score: Number(score.value),
      severity: severity.value,
      thresholds,
    }, rule.id);
  });
  return row;
}

async function loadAudit() {
  const entries = await get("/v1/rules/audit?limit=100");
  document.getElementById("audit-list").replaceChildren(
    ...entries.map((e) =>
      h("li", { class: e.refused ? "refused" : "" },
        h("span", { class: "muted" }, `${fmtTime(e.at)} `),
        h("b", {}, e.who), ` (${e.source}) `,
        e.refused ? `refused: ${e.note}` : e.changes.join("; ") || "no change",
        !e.refused && e.note ? h("span", { class: "muted" }, ` - ${e.note}`) : null,
      ),
    ),
  );
}
