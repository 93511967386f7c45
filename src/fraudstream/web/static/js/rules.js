// The running rules: enable/disable, score, severity and thresholds, applied to the running
// pipeline at once (no restart), with the audit log of every change. User rules (a `when`
// expression of the rule language) are added, edited, checked as they are typed (the error
// shown under its column) and removed the same way.

import { analyst, del, fmtTime, get, h, patch, post, put, status } from "./api.js";

const VALIDATE_DELAY_MS = 300;

export function initRules() {
  document.getElementById("decision-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    await patchChange("/v1/rules", {
      review_threshold: Number(form.elements.review_threshold.value),
      decline_threshold: Number(form.elements.decline_threshold.value),
    }, "decision thresholds");
  });
  initUserRuleForm();
}

export async function rulesShown() {
  await Promise.all([loadRules(), loadAudit()]);
}

function who() {
  const name = analyst();
  if (!name) {
    status("enter your analyst name (top right) first", "error");
    document.getElementById("analyst").focus();
  }
  return name;
}

// send(note-and-who) makes the request; refused changes are in the audit log too.
async function change(what, send) {
  const name = who();
  if (!name) return false;
  try {
    await send(name, document.getElementById("rules-note").value);
    status(`${what}: applied to the running pipeline`);
    await Promise.all([loadRules(), loadAudit()]);
    return true;
  } catch (error) {
    status(`${what}: ${error.message}`, "error");
    await loadAudit();
    throw error;
  }
}

async function patchChange(path, body, what) {
  try {
    return await change(what, (name, note) => patch(path, { ...body, who: name, note }));
  } catch {
    return false;
  }
}

async function loadRules() {
  const rules = await get("/v1/rules");
  const form = document.getElementById("decision-form");
  form.elements.review_threshold.value = rules.decision.review_threshold;
  form.elements.decline_threshold.value = rules.decision.decline_threshold;
  document.getElementById("rules-body").replaceChildren(...rules.rules.map(ruleRow));
  document.getElementById("user-rules-body").replaceChildren(
    ...(rules.user_rules.length
      ? rules.user_rules.map(userRuleRow)
      : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "none yet: write one below"))]),
  );
}

// --- user rules ----------------------------------------------------------------------------

function userRuleRow(rule) {
  const edit = h("button", { type: "button", class: "edit" }, "edit");
  const remove = h("button", { type: "button", class: "remove" }, "remove");
  edit.addEventListener("click", () => fillUserRuleForm(rule));
  remove.addEventListener("click", async () => {
    const name = who();
    if (!name) return;
    const query = new URLSearchParams({ who: name, note: document.getElementById("rules-note").value });
    try {
      await change(`${rule.id} removed`, () => del(`/v1/rules/user/${encodeURIComponent(rule.id)}?${query}`));
    } catch {
      // shown in the status line
    }
  });
  return h("tr", { dataset: { userRule: rule.id } },
    h("td", { class: "mono" }, rule.id),
    h("td", { class: "mono when" }, rule.when),
    h("td", {}, rule.score === null ? "" : rule.score),
    h("td", {}, rule.outcome || ""),
    h("td", {}, rule.enabled ? "yes" : "no"),
    h("td", {}, rule.description),
    h("td", {}, edit, " ", remove),
  );
}

function fillUserRuleForm(rule) {
  const form = document.getElementById("user-rule-form");
  form.elements.id.value = rule.id;
  form.elements.when.value = rule.when;
  form.elements.score.value = rule.score === null ? "" : rule.score;
  form.elements.outcome.value = rule.outcome || "";
  form.elements.severity.value = rule.severity;
  form.elements.enabled.checked = rule.enabled;
  form.elements.description.value = rule.description;
  showExpressionError(null);
  form.elements.when.focus();
}

// The error under the expression: the text, a caret under the 1-based column, the message.
function showExpressionError(detail, when = "") {
  const shown = document.getElementById("user-rule-error");
  const state = document.getElementById("user-rule-state");
  if (!detail) {
    shown.hidden = true;
    shown.textContent = "";
    delete shown.dataset.column;
    state.textContent = when ? "valid" : "";
    return;
  }
  const column = Number.isInteger(detail.column) ? detail.column : null;
  const lines = column === null ? [detail.message] : [when, `${" ".repeat(Math.max(column - 1, 0))}^`, detail.message];
  shown.textContent = lines.join("\n");
  shown.hidden = false;
  if (column === null) delete shown.dataset.column;
  else shown.dataset.column = String(column);
  state.textContent = "not applied";
}

let validating = 0;

async function validateExpression() {
  const when = document.getElementById("user-rule-form").elements.when.value.trim();
  const asked = ++validating;
  if (!when) {
    showExpressionError(null);
    return false;
  }
  try {
    await post("/v1/rules/validate", { when });
    if (asked === validating) showExpressionError(null, when);
    return true;
  } catch (error) {
    if (asked !== validating) return false;
    const detail = Array.isArray(error.detail) ? error.detail[0] : { message: error.message };
    showExpressionError(detail, when);
    return false;
  }
}

function initUserRuleForm() {
  const form = document.getElementById("user-rule-form");
  let timer = null;
  form.elements.when.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(validateExpression, VALIDATE_DELAY_MS);
  });
  document.getElementById("user-rule-validate").addEventListener("click", () => {
    clearTimeout(timer);
    validateExpression();
  });
  form.addEventListener("reset", () => showExpressionError(null));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    const id = form.elements.id.value.trim();
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(id)) {
      status("a rule id is a letter, then letters, digits or _", "error");
      form.elements.id.focus();
      return;
    }
    const when = form.elements.when.value.trim();
    const score = form.elements.score.value;
    const body = {
      when,
      score: score === "" ? null : Number(score),
      outcome: form.elements.outcome.value || null,
      severity: form.elements.severity.value,
      enabled: form.elements.enabled.checked,
      description: form.elements.description.value,
    };
    try {
      await change(id, (name, note) => put(`/v1/rules/user/${encodeURIComponent(id)}`, { ...body, who: name, note }));
      showExpressionError(null);
      document.getElementById("user-rule-state").textContent = "applied";
    } catch (error) {
      const detail = Array.isArray(error.detail) ? error.detail[0] : { message: error.message };
      showExpressionError(detail, when);
    }
  });
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
    await patchChange(`/v1/rules/${encodeURIComponent(rule.id)}`, {
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
