// The Rules tab's backtest: the rules as edited on the page (applied or not) replayed over the
// history the server was given (`fraudstream serve --history`), against the running rules,
// with the pipeline that runs live. The report is shown before anything is applied: the whole
// decision's precision and recall under both, the tiers and the transactions that changed
// tier, each rule's figures, and a chart of alerts per day per rule.

import { h, post, status } from "./api.js";

const SHOWN_CHANGES = 20;
const COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#d97706", "#8250df", "#0a7ea4", "#bf3989", "#57606a"];

export function initBacktest(editedRules) {
  const button = document.getElementById("backtest-run");
  button.addEventListener("click", async () => {
    const rules = editedRules();
    if (!rules) return;
    const state = document.getElementById("backtest-state");
    state.textContent = "replaying the history ...";
    button.disabled = true;
    try {
      const report = await post("/v1/rules/backtest", { rules });
      state.textContent = `${report.transactions.toLocaleString("en-US")} transactions replayed; nothing applied`;
      showReport(report);
    } catch (error) {
      state.textContent = "";
      document.getElementById("backtest-report").replaceChildren(
        h("p", { class: "error" }, error.status === 409
          ? "no history to backtest on: start the server with --history FILE --history-labels FILE"
          : error.message));
      status(`backtest: ${error.message}`, "error");
    } finally {
      button.disabled = false;
    }
  });
}

const share = (value) => (value === null || value === undefined ? "-" : `${(100 * value).toFixed(1)}%`);
const count = (value) => Number(value).toLocaleString("en-US");

function table(head, rows) {
  return h("table", { class: "grid compact" },
    h("thead", {}, h("tr", {}, ...head.map((name) => h("th", {}, name)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((cell) => h("td", {}, cell))))),
  );
}

function delta(after, before) {
  if (after === before) return h("span", { class: "muted" }, "=");
  const sign = after > before ? "+" : "";
  return h("span", {}, `${sign}${count(after - before)}`);
}

function showReport(report) {
  const decision = report.decision;
  const label = (name) => report[name].rules;
  const parts = [
    h("h4", {}, "decision (review or decline)"),
    table(["rules", "alerts", "true positives", "precision", "recall"],
      ["baseline", "candidate"].map((name) => [
        label(name),
        count(decision[name].alerts), count(decision[name].true_positives),
        share(decision[name].precision), share(decision[name].recall),
      ])),
    h("h4", {}, "tiers"),
    table(["rules", "approve", "review", "decline"], ["baseline", "candidate"].map((name) => [
      label(name), count(report.tiers[name].approve), count(report.tiers[name].review), count(report.tiers[name].decline),
    ])),
  ];
  const moves = Object.entries(report.tiers.transitions || {});
  parts.push(h("p", { class: "changed-summary" }, moves.length
    ? `${count(report.changed_count)} transactions change tier: ${moves.map(([k, v]) => `${k} ${count(v)}`).join(", ")}`
    : "no transaction changes tier"));
  if (report.changed.length) {
    parts.push(table(["transaction", "before", "after"], report.changed.slice(0, SHOWN_CHANGES).map(
      (c) => [h("span", { class: "mono" }, c.transaction_id), c.before, c.after])));
  }
  const before = new Map(report.baseline_rules.map((r) => [r.id, r]));
  parts.push(h("h4", {}, "rules (edited)"), table(
    ["rule", "mode", "alerts", "vs running", "true pos.", "false pos.", "precision", "recall", "per day", "fraud caught"],
    report.rules.map((r) => [
      h("span", { class: "mono" }, r.id), r.mode, count(r.alerts),
      delta(r.alerts, before.get(r.id)?.alerts ?? 0), count(r.true_positives), count(r.false_positives),
      share(r.precision), share(r.recall), r.alerts_per_day.toFixed(1),
      r.caught_amount.toLocaleString("en-US", { maximumFractionDigits: 2 }),
    ])));
  parts.push(h("h4", {}, "alerts per day per rule (edited)"), chart(report.alerts_per_day.candidate));
  document.getElementById("backtest-report").replaceChildren(...parts);
}

// One polyline per rule over the days of the history (SVG, no library).
function chart(series) {
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", "0 0 600 200");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "alerts per day per rule");
  svg.id = "backtest-chart";
  const days = [...new Set(series.map((p) => p.day))].sort();
  if (!days.length) return h("p", { class: "muted" }, "no alerts");
  const top = Math.max(...series.map((p) => p.alerts), 1);
  const x = (day) => 40 + (days.length === 1 ? 260 : (520 * days.indexOf(day)) / (days.length - 1));
  const y = (value) => 180 - (160 * value) / top;
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(svgNs, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: 40, y1: 180, x2: 580, y2: 180, stroke: "#d0d7de" });
  add("text", { x: 0, y: 24, "font-size": 10 }, String(top));
  add("text", { x: 40, y: 196, "font-size": 10 }, days[0]);
  add("text", { x: 520, y: 196, "font-size": 10 }, days[days.length - 1]);
  const rules = [...new Set(series.map((p) => p.rule))];
  rules.forEach((rule, k) => {
    const points = new Map(series.filter((p) => p.rule === rule).map((p) => [p.day, p.alerts]));
    const line = days.map((day) => `${x(day).toFixed(1)},${y(points.get(day) || 0).toFixed(1)}`).join(" ");
    const colour = COLOURS[k % COLOURS.length];
    add("polyline", { points: line, fill: "none", stroke: colour, "stroke-width": 1.5, "data-rule": rule });
    add("text", { x: 470, y: 14 + 11 * k, "font-size": 10, fill: colour }, rule);
  });
  return svg;
}
