// The metrics panel (uPlot charts): totals by tier since the decision store's first decision,
// throughput, latency p50/p99; per second over the last 5 minutes the decisions by tier and
// the latency; alerts per rule.

import { fmtNumber, fmtTime, get, h } from "./api.js";

const TIERS = ["approve", "review", "decline"];
const COLORS = { approve: "#1a7f37", review: "#d97706", decline: "#cf222e" };
const SECONDS = 300;
let timer = null;
const charts = {}; // name -> uPlot
let ruleNames = "";
const ago = (v) => (v === 0 ? "now" : `${-v} s ago`);
const SECONDS_AXIS = { label: "seconds ago", values: (_u, splits) => splits.map((v) => (v === 0 ? "now" : String(-v))) };
const SECONDS_SERIES = { label: "at", value: (_u, v) => (v === null ? "-" : ago(v)) };

export function metricsShown() {
  refresh();
  if (!timer) timer = setInterval(() => {
    if (!document.getElementById("tab-metrics").hidden) refresh();
  }, 2000);
}

async function refresh() {
  const m = await get("/v1/metrics");
  const cards = [
    ["throughput", `${fmtNumber(m.throughput_per_s, 1)} /s`, "decisions per second, last 10 s"],
    ["latency p50", m.latency_ms.p50 === null ? "-" : `${fmtNumber(m.latency_ms.p50, 2)} ms`, "of the last 10,000 decisions"],
    ["latency p99", m.latency_ms.p99 === null ? "-" : `${fmtNumber(m.latency_ms.p99, 2)} ms`, "of the last 10,000 decisions"],
    ...TIERS.map((t) => [t, fmtNumber(m.totals[t], 0), `${fmtNumber(m.totals_since_start[t], 0)} since the app started`]),
  ];
  document.getElementById("metric-cards").replaceChildren(
    ...cards.map(([name, value, note]) =>
      h("div", { class: "card", dataset: { metric: name } },
        h("div", { class: "muted" }, name), h("div", { class: "big" }, value), h("div", { class: "muted small-note" }, note))),
  );
  document.getElementById("metrics-since").textContent =
    `Totals count from the decision store's first decision (${fmtTime(m.since)}); the app started ${fmtTime(m.started)}.`;
  // x: seconds before now (-299 ... 0), so the axis reads the same in every time zone
  const now = Math.floor(Date.now() / 1000);
  const x = Array.from({ length: SECONDS }, (_, k) => k - SECONDS + 1);
  const at = new Map(m.series.map((s) => [s.t - now, s]));
  const tiers = TIERS.map((t) => x.map((second) => (at.has(second) ? at.get(second)[t] : 0)));
  const p50 = x.map((second) => (at.has(second) && at.get(second).p50_ms !== undefined ? at.get(second).p50_ms : null));
  const p99 = x.map((second) => (at.has(second) && at.get(second).p99_ms !== undefined ? at.get(second).p99_ms : null));
  plot("tier", [x, ...tiers], () => ({
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    axes: [SECONDS_AXIS, { label: "decisions / s", size: 60 }],
    series: [SECONDS_SERIES, ...TIERS.map((t) => ({ label: t, stroke: COLORS[t], width: 1.5, fill: `${COLORS[t]}22`, value: (_u, v) => (v === null ? "-" : fmtNumber(v, 0)) }))],
  }));
  plot("latency", [x, p50, p99], () => ({
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(0.1, max || 0) * 1.1] } },
    axes: [SECONDS_AXIS, { label: "ms", size: 60 }],
    series: [SECONDS_SERIES,
      { label: "p50", stroke: "#0969da", width: 1.5, points: { show: true, size: 3 }, value: (_u, v) => (v === null ? "-" : `${fmtNumber(v, 2)} ms`) },
      { label: "p99", stroke: "#8250df", width: 1.5, points: { show: true, size: 3 }, value: (_u, v) => (v === null ? "-" : `${fmtNumber(v, 2)} ms`) }],
  }));
  rules(m.alerts_by_rule);
}

function width(element) {
  return Math.max(320, element.clientWidth || element.parentElement.clientWidth - 20);
}

function plot(name, data, options) {
  const element = document.getElementById(`${name}-chart`);
  if (charts[name]) {
    charts[name].setData(data);
    return;
  }
  charts[name] = new window.uPlot({ width: width(element), height: 220, ...options() }, data, element);
}

function rules(counts) {
  const element = document.getElementById("rule-chart");
  const names = Object.keys(counts);
  if (!names.length) {
    if (charts.rule) {
      charts.rule.destroy();
      delete charts.rule;
    }
    ruleNames = "";
    element.replaceChildren(h("p", { class: "muted empty" }, "no alert yet"));
    return;
  }
  const data = [names.map((_, k) => k), names.map((n) => counts[n])];
  if (charts.rule && ruleNames === names.join()) {
    charts.rule.setData(data);
    return;
  }
  if (charts.rule) charts.rule.destroy();
  element.replaceChildren();
  ruleNames = names.join();
  charts.rule = new window.uPlot({
    width: width(element),
    height: 260,
    padding: [12, 72, 0, 0],
    scales: { x: { time: false, range: [-0.6, names.length - 0.4] }, y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] } },
    axes: [
      { splits: () => names.map((_, k) => k), values: (_u, splits) => splits.map((k) => names[k] || ""), rotate: -25, size: 90, gap: 4 },
      { label: "alerts", size: 60 },
    ],
    series: [
      { label: "rule", value: (_u, k) => (k === null ? "-" : names[k] || "") },
      { label: "alerts", stroke: "#cf222e", fill: "#cf222e99", width: 1, paths: window.uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } },
    ],
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
  }, data, element);
}
