// The running rules: enable/disable, live or shadow, score, severity and thresholds, applied
// to the running pipeline at once (no restart), with the audit log of every change. User rules
// (a `when` expression of the rule language) are added, edited, checked as they are typed (the
// error shown under its column) and removed the same way. A row whose edits are not applied
// yet is highlighted; the edits can be backtested first (backtest.js). Every applied rule set
// is a numbered version, listed with a rollback button; refused changes are listed apart.

import { analyst, del, fmtTime, get, h, patch, post, put, status } from "./api.js";
import { initBacktest } from "./backtest.js";

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
  initBacktest(editedRules);
  // The decision thresholds, like a rule's row: highlighted while edited and not applied.
  const decision = document.getElementById("decision-form");
  decision.addEventListener("input", () => {
    if (!running) return;
    const edited = ["review_threshold", "decline_threshold"].some(
      (name) => Number(decision.elements[name].value) !== running.decision[name]);
    decision.classList.toggle("unapplied", edited);
  });
}

export async function rulesShown() {
  await Promise.all([loadRules(), loadAudit(), loadVersions()]);
}

let running = null; // the last GET /v1/rules

// The rule set as edited on the page (applied or not), as a rules document: what a backtest
// replays against the running rules.
export function editedRules() {
  if (!running) return null;
  const form = document.getElementById("decision-form");
  const rules = [];
  for (const rule of running.rules) {
    const row = document.querySelector(`#rules-body tr[data-rule="${CSS.escape(rule.id)}"]`);
    const edits = row ? rowEdits(row, rule) : {};
    const thresholds = {};
    const merged = { ...rule.thresholds, ...(edits.thresholds || {}) };
    for (const [name, value] of Object.entries(merged)) {
      if (JSON.stringify(value) !== JSON.stringify(rule.defaults[name])) thresholds[name] = value;
    }
    rules.push({
      id: rule.id, detector: rule.detector, enabled: edits.enabled ?? rule.enabled,
      mode: edits.mode ?? rule.mode, score: edits.score ?? rule.score,
      severity: edits.severity ?? rule.severity, thresholds,
    });
  }
  const user = new Map(running.user_rules.map((r) => [r.id, userEntry(r)]));
  const drafted = draftedUserRule();
  if (drafted) user.set(drafted.id, drafted);
  return {
    decision: {
      review_threshold: Number(form.elements.review_threshold.value),
      decline_threshold: Number(form.elements.decline_threshold.value),
    },
    rules: [...rules, ...user.values()],
  };
}

function userEntry(rule) {
  const entry = { id: rule.id, when: rule.when, enabled: rule.enabled, mode: rule.mode || "live", severity: rule.severity };
  if (rule.score !== null && rule.score !== undefined) entry.score = rule.score;
  if (rule.outcome) entry.outcome = rule.outcome;
  if (rule.description) entry.description = rule.description;
  return entry;
}

// The user rule in the form, when it has an id and an expression (added or edited).
function draftedUserRule() {
  const form = document.getElementById("user-rule-form");
  const id = form.elements.id.value.trim();
  const when = form.elements.when.value.trim();
  if (!id || !when) return null;
  const score = form.elements.score.value;
  return userEntry({
    id, when, enabled: form.elements.enabled.checked, mode: form.elements.mode.value,
    severity: form.elements.severity.value, score: score === "" ? null : Number(score),
    outcome: form.elements.outcome.value || null, description: form.elements.description.value,
  });
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
    await Promise.all([loadRules(), loadAudit(), loadVersions()]);
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
  running = rules;
  document.getElementById("rules-version").textContent = `rule version ${rules.version} in force`;
  const form = document.getElementById("decision-form");
  form.elements.review_threshold.value = rules.decision.review_threshold;
  form.elements.decline_threshold.value = rules.decision.decline_threshold;
  form.classList.remove("unapplied");
  document.getElementById("rules-body").replaceChildren(...rules.rules.map(ruleRow));
  document.getElementById("user-rules-body").replaceChildren(
    ...(rules.user_rules.length
      ? rules.user_rules.map(userRuleRow)
      : [h("tr", {}, h("td", { colspan: 9, class: "muted" }, "none yet: write one below"))]),
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
  return h("tr", { dataset: { userRule: rule.id }, class: rule.mode === "shadow" ? "shadow" : "" },
    h("td", { class: "mono" }, rule.id),
    h("td", { class: "mono when" }, rule.when),
    h("td", {}, rule.score === null ? "" : rule.score),
    h("td", {}, rule.outcome || ""),
    h("td", {}, rule.enabled ? "yes" : "no"),
    h("td", { class: "mode" }, rule.mode || "live"),
    h("td", { class: "hits" }, String(rule.hits ?? 0)),
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
  form.elements.mode.value = rule.mode || "live";
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
      mode: form.elements.mode.value,
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
  const mode = h("select", { name: "mode", title: "live: scores and decides; shadow: recorded only" },
    ...["live", "shadow"].map((m) => h("option", { value: m, selected: m === rule.mode }, m)));
  const score = h("input", { type: "number", min: 0, max: 1, step: 0.01, value: rule.score, name: "score", class: "small" });
  const severity = h("select", { name: "severity", title: "how urgent an alert of this rule is; never changes the score" }, ...["low", "medium", "high", "critical"].map((s) => h("option", { value: s, selected: s === rule.severity }, s)));
  const inputs = Object.entries(rule.thresholds).map(([name, value]) => {
    const input = typeof value === "boolean"
      ? h("input", { type: "checkbox", checked: value, dataset: { threshold: name, kind: "bool" } })
      : typeof value === "number"
        ? h("input", { type: "number", step: "any", value, class: "small", dataset: { threshold: name, kind: "number" } })
        : h("span", { class: "mono", title: Array.isArray(value) && !value.length ? "empty: every listed network fires; set a list in a rules file" : "set in a rules file" }, JSON.stringify(value) === "[]" ? "[ ]" : JSON.stringify(value));
    const changed = JSON.stringify(value) !== JSON.stringify(rule.defaults[name]);
    return h("label", { class: changed ? "threshold changed" : "threshold", title: `default ${JSON.stringify(rule.defaults[name])}` }, `${name} `, input);
  });
  const apply = h("button", { type: "button", class: "apply" }, "apply");
  const row = h("tr", { dataset: { rule: rule.id }, class: rule.mode === "shadow" ? "shadow" : "" },
    h("td", { class: "mono" }, rule.id,
      rule.id !== rule.detector ? h("div", { class: "muted" }, `(${rule.detector})`) : null,
      rule.description ? h("div", { class: "muted rule-description" }, rule.description) : null),
    h("td", {}, enabled),
    h("td", {}, mode),
    h("td", {}, score),
    h("td", {}, severity),
    h("td", { class: "thresholds" }, inputs.length ? inputs : h("span", { class: "muted", title: "this rule has no threshold to tune" }, "none")),
    h("td", { class: "hits", title: "transactions it fired on since the app started" }, String(rule.hits ?? 0)),
    h("td", {}, apply),
  );
  // Edits not applied yet: the row is highlighted until they are (or undone).
  const mark = () => {
    const pending = Object.keys(rowEdits(row, rule)).length > 0;
    row.classList.toggle("unapplied", pending);
    row.title = pending ? "edited, not applied" : "";
  };
  row.addEventListener("input", mark);
  row.addEventListener("change", mark);
  apply.addEventListener("click", async () => {
    for (const input of row.querySelectorAll("[data-threshold]")) {
      if (input.dataset.kind !== "bool" && (input.value === "" || Number.isNaN(Number(input.value)))) {
        status(`${rule.id}: ${input.dataset.threshold} must be a number`, "error");
        return;
      }
    }
    const edits = rowEdits(row, rule);
    await patchChange(`/v1/rules/${encodeURIComponent(rule.id)}`, {
      enabled: enabled.checked,
      mode: mode.value,
      score: Number(score.value),
      severity: severity.value,
      thresholds: edits.thresholds || {},
    }, rule.id);
  });
  return row;
}

// What the row's controls hold that differs from the running rule (empty: nothing to apply).
function rowEdits(row, rule) {
  const edits = {};
  const value = (name) => row.querySelector(`[name="${name}"]`);
  if (value("enabled").checked !== rule.enabled) edits.enabled = value("enabled").checked;
  if (value("mode").value !== rule.mode) edits.mode = value("mode").value;
  if (Number(value("score").value) !== rule.score) edits.score = Number(value("score").value);
  if (value("severity").value !== rule.severity) edits.severity = value("severity").value;
  const thresholds = {};
  for (const input of row.querySelectorAll("[data-threshold]")) {
    const given = input.dataset.kind === "bool" ? input.checked : Number(input.value);
    if (given !== rule.thresholds[input.dataset.threshold]) thresholds[input.dataset.threshold] = given;
  }
  if (Object.keys(thresholds).length) edits.thresholds = thresholds;
  return edits;
}

async function loadVersions() {
  const versions = await get("/v1/rules/versions");
  document.getElementById("versions-body").replaceChildren(...versions.map((v) => {
    const back = v.current
      ? h("span", { class: "muted" }, "in force")
      : h("button", { type: "button", class: "rollback", dataset: { version: v.version } }, `roll back to ${v.version}`);
    if (!v.current) {
      back.addEventListener("click", async () => {
        try {
          await change(`version ${v.version}`, (name, note) =>
            post("/v1/rules/rollback", { version: v.version, who: name, note }));
          await loadVersions();
        } catch {
          // shown in the status line and the refused changes
        }
      });
    }
    return h("tr", { dataset: { version: v.version }, class: v.current ? "current" : "" },
      h("td", {}, String(v.version)),
      h("td", { class: "muted" }, fmtTime(v.at)),
      h("td", {}, v.who),
      h("td", {}, v.source),
      h("td", { class: "mono" }, v.changes.join("; ") || (v.version === 1 ? "first version" : "no change"),
        v.note ? h("span", { class: "muted" }, ` - ${v.note}`) : null),
      h("td", {}, back),
    );
  }));
}

async function loadAudit() {
  const entries = await get("/v1/rules/audit?limit=100");
  const refused = entries.filter((e) => e.refused);
  document.getElementById("refused-list").replaceChildren(
    ...(refused.length
      ? refused.map((e) => h("li", {},
        h("span", { class: "muted" }, `${fmtTime(e.at)} `), h("b", {}, e.who), ` (${e.source}) `,
        e.note.replace(/^refused: /, "")))
      : [h("li", { class: "muted" }, "none")]),
  );
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
